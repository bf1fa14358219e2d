"""The named augmentation policies, applied to a whole batch at once with tensor operations.

Each albumentations transform a policy (spec/policies.py) uses has a kernel here, registered
under its albumentations name in `KERNELS`; tests/data/test_augment.py runs every policy batched
and checks every kernel against albumentations.

Why hand-written: albumentations transforms one image per Python call; at the 8–64 px images
this tool searches on, its per-call overhead (~100 µs) costs more than the network's own step,
so augmentation, not the model, would set the pace of every trial (bench/throughput.py measures
it). The four transforms the named policies use (albumentations' `Affine`,
`RandomBrightnessContrast`, `CoarseDropout`, `HorizontalFlip`) are re-implemented here with the
same parameters and the same geometry (albumentations' affine matrix about the image centre,
bilinear sampling, black borders), for a whole batch in a few tensor operations, on whatever
device the batch is on. Custom transform lists still run through albumentations itself;
tests/data/test_augment.py checks both give the same images for the same parameters.

Input and output: float images in [0, 1], shape (N, C, H, W), before normalisation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from automl_clf.spec.registry import Registry

# A kernel: (batch, chosen images (N,) bool, the albumentations entry, generator) -> batch.
Kernel = Callable[[torch.Tensor, torch.Tensor, dict[str, Any], torch.Generator], torch.Tensor]
KERNELS: Registry[Kernel] = Registry("batched transform")


def _pair(value: Any, default: float) -> tuple[float, float]:
    """albumentations' Affine arguments: a number v means exactly v; a pair is (low, high)."""
    if value is None:
        return (default, default)
    if isinstance(value, (int, float)):
        return (float(value), float(value))
    return (float(value[0]), float(value[1]))


def _symmetric(value: Any) -> tuple[float, float]:
    """albumentations' limits (brightness, contrast): a number v means (-v, v)."""
    if isinstance(value, (int, float)):
        return (-float(value), float(value))
    return (float(value[0]), float(value[1]))


class BatchAugmenter:
    """Applies a list of supported transform entries to float batches, seeded per call."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        unsupported = [e["name"] for e in entries if e["name"] not in KERNELS]
        if unsupported:
            raise ValueError(
                f"no batched implementation of {', '.join(unsupported)} (batched: "
                f"{', '.join(KERNELS)})"
            )
        self.entries = entries

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for entry in self.entries:
            chosen = _uniform(generator, len(x), 0.0, 1.0) < float(entry.get("p", 0.5))
            if not bool(chosen.any()):
                continue
            x = KERNELS[entry["name"]](x, chosen.to(x.device), entry, generator)
        return x


@KERNELS.register("HorizontalFlip")
def _horizontal_flip(
    x: torch.Tensor, chosen: torch.Tensor, entry: dict[str, Any], g: torch.Generator
) -> torch.Tensor:
    return torch.where(chosen.view(-1, 1, 1, 1), x.flip(-1), x)


@KERNELS.register("RandomBrightnessContrast")
def _brightness_contrast(
    x: torch.Tensor, chosen: torch.Tensor, entry: dict[str, Any], g: torch.Generator
) -> torch.Tensor:
    n = len(x)
    b_low, b_high = _symmetric(entry.get("brightness_limit", 0.2))
    c_low, c_high = _symmetric(entry.get("contrast_limit", 0.2))
    alpha = 1.0 + _uniform(g, n, c_low, c_high).to(x.device)
    beta = _uniform(g, n, b_low, b_high).to(x.device)  # × the maximum value, 1.0
    adjusted = (x * alpha.view(-1, 1, 1, 1) + beta.view(-1, 1, 1, 1)).clamp(0.0, 1.0)
    return torch.where(chosen.view(-1, 1, 1, 1), adjusted, x)


@KERNELS.register("CoarseDropout")
def _coarse_dropout(
    x: torch.Tensor, chosen: torch.Tensor, entry: dict[str, Any], g: torch.Generator
) -> torch.Tensor:
    n, _, height, width = x.shape
    holes_low, holes_high = entry.get("num_holes_range", (1, 2))
    h_low, h_high = entry.get("hole_height_range", (0.1, 0.2))
    w_low, w_high = entry.get("hole_width_range", (0.1, 0.2))
    keep = torch.ones(n, 1, height, width, dtype=torch.bool)
    rows = torch.arange(height).view(1, -1, 1)
    cols = torch.arange(width).view(1, 1, -1)
    for hole in range(int(holes_high)):
        active = torch.full((n,), hole < int(holes_low), dtype=torch.bool)
        if hole >= int(holes_low):  # a random number of holes between low and high
            count = torch.randint(int(holes_low), int(holes_high) + 1, (n,), generator=g)
            active = hole < count
        hh = _size(_uniform(g, n, h_low, h_high), height)
        ww = _size(_uniform(g, n, w_low, w_high), width)
        top = (_uniform(g, n, 0.0, 1.0) * (height - hh + 1)).floor().long()
        left = (_uniform(g, n, 0.0, 1.0) * (width - ww + 1)).floor().long()
        inside = (
            (rows >= top.view(-1, 1, 1))
            & (rows < (top + hh).view(-1, 1, 1))
            & (cols >= left.view(-1, 1, 1))
            & (cols < (left + ww).view(-1, 1, 1))
        )
        keep &= ~(inside & active.view(-1, 1, 1)).unsqueeze(1)
    keep = keep.to(x.device) | ~chosen.view(-1, 1, 1, 1)
    return x * keep


@KERNELS.register("Affine")
def _affine(
    x: torch.Tensor, chosen: torch.Tensor, entry: dict[str, Any], g: torch.Generator
) -> torch.Tensor:
    n, _, height, width = x.shape
    t_low, t_high = _pair(entry.get("translate_percent"), 0.0)
    s_low, s_high = _pair(entry.get("scale"), 1.0)
    r_low, r_high = _pair(entry.get("rotate"), 0.0)
    h_low, h_high = _pair(entry.get("shear"), 0.0)
    # albumentations draws x and y independently; shifts are whole pixels; shear is negated
    shift_x = (_uniform(g, n, t_low, t_high) * width).trunc()
    shift_y = (_uniform(g, n, t_low, t_high) * height).trunc()
    scale_x, scale_y = _uniform(g, n, s_low, s_high), _uniform(g, n, s_low, s_high)
    angle = torch.deg2rad(_uniform(g, n, r_low, r_high))
    shear_x = torch.tan(torch.deg2rad(-_uniform(g, n, h_low, h_high)))
    shear_y = torch.tan(torch.deg2rad(-_uniform(g, n, h_low, h_high)))
    # The linear part A = shear · rotate · scale of albumentations' matrix, about the centre:
    # destination = A (source − c) + c + shift, so source = A⁻¹ (destination − c − shift) + c
    cos, sin = torch.cos(angle), torch.sin(angle)
    a11 = (cos - shear_x * sin) * scale_x
    a12 = (sin + shear_x * cos) * scale_y
    a21 = (shear_y * cos - sin) * scale_x
    a22 = (shear_y * sin + cos) * scale_y
    det = a11 * a22 - a12 * a21
    i11, i12, i21, i22 = (a22 / det, -a12 / det, -a21 / det, a11 / det)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    points = _pixel_grid(height, width)  # (2, H*W) destination pixels
    dx = points[0].unsqueeze(0) - cx - shift_x.unsqueeze(1)
    dy = points[1].unsqueeze(0) - cy - shift_y.unsqueeze(1)
    source_x = i11.unsqueeze(1) * dx + i12.unsqueeze(1) * dy + cx
    source_y = i21.unsqueeze(1) * dx + i22.unsqueeze(1) * dy + cy
    grid = torch.stack(
        [source_x * (2 / max(width - 1, 1)) - 1, source_y * (2 / max(height - 1, 1)) - 1],
        dim=-1,
    ).view(n, height, width, 2)
    warped = torch.nn.functional.grid_sample(
        x,
        grid.to(x.device, x.dtype),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )
    return torch.where(chosen.view(-1, 1, 1, 1), warped, x)


@functools.lru_cache(maxsize=16)
def _pixel_grid(height: int, width: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32),
        torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )
    return torch.stack([xs.reshape(-1), ys.reshape(-1)])


def _uniform(g: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g)


def _size(fraction: torch.Tensor, extent: int) -> torch.Tensor:
    """A hole side in pixels from a fraction of the side, at least 1."""
    return (fraction * extent).long().clamp(min=1, max=extent)
