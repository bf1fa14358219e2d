"""`autoclf visualize`: PNGs of what an exported network has learned and what it sees in an image.

filters.png           the first convolution's kernels (red/blue: positive/negative weight for
                      grayscale input; colour kernels rescaled to [0, 1] each)
stage_<i>_<name>.png  the image, then the most active channels of that stage's feature maps
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from automl_clf.data.preprocess import Preprocessing
from automl_clf.models.stages import feature_maps, first_conv
from automl_clf.outputs import safe_name
from automl_clf.report.plots import draw_image_grid, save_figure

MAX_FILTERS = 64  # kernels drawn from the first convolution
MAX_CHANNELS = 15  # feature maps drawn per stage (the most active), beside the input image


@dataclass(frozen=True)
class NetworkFigures:
    files: list[Path]
    predicted: str
    probability: float
    notes: list[str]  # what could not be drawn, and why


def write_network_figures(
    model: nn.Module,
    preprocessing: Preprocessing,
    classes: list[str],
    pixels: np.ndarray,
    out_dir: Path,
) -> NetworkFigures:
    """Write the module docstring's PNGs for one decoded image (uint8 H, W, C) into `out_dir`.

    `pixels` must come from the export's own decoding (`Predictor.load`), so the network sees
    exactly what it sees in `predict`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    x = preprocessing.to_tensor(np.stack([pixels]))  # a writable batch of one
    with torch.no_grad():
        probabilities = torch.softmax(model(x).float(), dim=1)[0]
    best = int(probabilities.argmax())
    predicted, probability = classes[best], float(probabilities[best])
    files, notes = [], []

    conv = first_conv(model)
    if conv is None:
        notes.append("no convolution in this network: no filters to draw")
    else:
        path = out_dir / "filters.png"
        _plot_filters(conv.weight.detach().float().cpu(), path)
        files.append(path)

    shown = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
    stages = feature_maps(model, x)
    if not stages:
        notes.append("the network exposes no 2-D feature maps")
    for i, stage in enumerate(stages, start=1):
        maps = stage.maps.float().cpu()
        channels, height, width = maps.shape
        order = torch.argsort(maps.mean(dim=(1, 2)), descending=True)[:MAX_CHANNELS]
        path = out_dir / f"stage_{i}_{safe_name(stage.name)}.png"
        grid = draw_image_grid(
            [shown, *(maps[int(c)].numpy() for c in order)],
            [f"input → {predicted} ({probability:.2f})", *(f"channel {int(c)}" for c in order)],
            title=f"Stage {i} ({stage.name}): {channels} channels of {height}×{width} px, "
            f"the {len(order)} most active",
        )
        save_figure(grid, path)
        files.append(path)
    return NetworkFigures(files, predicted, probability, notes)


def _plot_filters(weight: torch.Tensor, path: Path) -> None:
    """Kernels (out, in, k, k): diverging colours for one input channel, RGB for three."""
    kernels = weight[:MAX_FILTERS]
    n_out, n_in, height, width = weight.shape
    images: list[np.ndarray] = []
    for kernel in kernels:
        if n_in == 3:
            low, high = kernel.min(), kernel.max()
            scaled = (kernel - low) / (high - low) if high > low else torch.zeros_like(kernel)
            images.append((scaled.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
        else:
            images.append(kernel.mean(dim=0).numpy())
    grid = draw_image_grid(
        images,
        [f"filter {i}" for i in range(len(images))],
        title=f"First convolution: {n_out} filters of {height}×{width} over {n_in} channel(s)"
        + (f", the first {MAX_FILTERS}" if n_out > MAX_FILTERS else ""),
        symmetric=n_in != 3,
    )
    save_figure(grid, path)
