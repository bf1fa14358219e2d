"""Heatmaps of where a model looked: Grad-CAM (Selvaraju et al. 2017) for the class it predicted.

A map is float32 (H, W) at the input's size, in [0, 1]: the gradient-weighted activations of
one layer, kept where positive, scaled to [0, 1] per image and resized to the input (bilinear).
An image where nothing in the layer speaks for the class is all 0.

The method is pytorch-grad-cam's (`grad-cam` on PyPI, pinned in pyproject.toml). Chosen over
captum because it carries the target-layer and `reshape_transform` conventions for CNNs and
vision transformers followed here; its requirements fit this environment as they are: it needs
`opencv-python-headless` (not `opencv-python`), the very distribution albumentations already
installs, so one `cv2` module serves both, and beyond that only `ttach` (pure Python) and scipy,
numpy, torch, matplotlib and scikit-learn, which autoclf has anyway.

The layer is found from the model's stages (`feature_info`, as `autoclf visualize` finds them,
models/stages.py), never from its name, by the shape of what each stage gives on this input:

- a 2-D feature map, NCHW (the plain CNN's conv blocks, timm CNN stages) or NHWC (Swin-like
  stages, permuted): the deepest stage whose map is at least MIN_SIDE px a side. A 1 × 1 map
  has no "where" (an 8 px image through a ResNet's stride-32 last stage), so a shallower stage
  is taken then.
- tokens (N, L, D) (timm's VisionTransformer, DeiT, BEiT, EVA, CaiT, MLP-Mixer, LeViT and the
  like), laid on the patch grid (the patch embedding's, else the stage's reduction) after
  dropping the tokens before the patches (class, distillation and register tokens): with such
  tokens in the block, the first normalisation inside the deepest block (timm's `norm1`, the
  attention's input), since there the class token reaches every patch token, while the block's
  own output gives the patch tokens no gradient when the head reads the class token; with
  patch tokens only, the deepest block's output (the head pools them, or reads a class token
  that attends to them later).
- neither: `ExplainUnavailable` says why (the report and `predict --explain` leave the heatmaps
  out with that note; the predictions stand).

A calibrated model (final/calibration.py) is explained as the network it wraps: dividing the
logits by a temperature changes neither the class nor the scaled map.

An `Ensemble` (final/ensemble.py) is explained member by member, each on the input
re-normalised for it and for the ensemble's predicted class; its map is the weighted mean of
the members' maps (the ensemble's weights), so a region only one member looks at is fainter. A
member without a usable layer is left out of the mean and named in `notes`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from automl_clf.errors import ExplainUnavailable
from automl_clf.final.calibration import Calibrated
from automl_clf.final.ensemble import Ensemble

MIN_SIDE = 2  # px: a stage's map must be at least this high and wide to show where
BATCH_SIZE = 32  # images per forward and backward pass (activations and gradients are kept)


@dataclass(frozen=True)
class Explanation:
    maps: np.ndarray  # float32 (N, H, W) in [0, 1], at the input's size
    classes: np.ndarray  # int64 (N,): the class each map explains (the predicted one)
    layer: str  # what was explained: a layer's name, or one per member of an ensemble
    notes: list[str]  # members of an ensemble left out, and why


@dataclass(frozen=True)
class CamLayer:
    """Where Grad-CAM reads a model: a module and how its output becomes NCHW."""

    name: str  # the module's name in the model, e.g. "layer4" or "blocks.5.norm1"
    module: nn.Module
    reshape: Callable[[torch.Tensor], torch.Tensor]  # its output (or gradient) -> NCHW


def explain(model: nn.Module, x: torch.Tensor) -> Explanation:
    """Grad-CAM maps of the images `x` (N, C, H, W, preprocessed as the model expects) for the
    class the model predicts for each, BATCH_SIZE images at a time.

    Raises:
        ExplainUnavailable: no layer of the model (of any member of an ensemble) can be used.
    """
    if len(x) == 0:
        raise ValueError("explain needs at least one image, got an empty batch")
    # A calibrated export divides the logits by one temperature T > 0: the predicted class is
    # the same, and each map only scales by 1/T before its per-image [0, 1] scaling, so the
    # network inside is explained (the wrapper has no stages of its own).
    while isinstance(model, Calibrated):
        model = model.model
    device = next(model.parameters()).device
    model.eval()
    parts = [
        _explain_batch(model, x[i : i + BATCH_SIZE].to(device))
        for i in range(0, len(x), BATCH_SIZE)
    ]
    return Explanation(
        maps=np.concatenate([part.maps for part in parts]),
        classes=np.concatenate([part.classes for part in parts]),
        layer=parts[0].layer,
        notes=parts[0].notes,
    )


def _explain_batch(model: nn.Module, x: torch.Tensor) -> Explanation:
    with torch.no_grad():
        classes = model(x).argmax(dim=1).cpu().numpy()
    if not isinstance(model, Ensemble):
        layer = cam_layer(model, x[:1])
        return Explanation(_grad_cam(model, layer, x, classes), classes, layer.name, [])
    total = np.zeros((len(x), *x.shape[2:]), dtype=np.float32)
    weight_sum, layers, notes = 0.0, [], []
    for k, (member, weight) in enumerate(zip(model.members, model.weights, strict=True)):
        x_k = x * model.scales[k] + model.shifts[k]  # as the ensemble's forward feeds member k
        try:
            layer = cam_layer(member, x_k[:1])
        except ExplainUnavailable as exc:
            notes.append(f"member {k} left out of the heatmaps: {exc}")
            continue
        total += weight * _grad_cam(member, layer, x_k, classes)
        weight_sum += weight
        layers.append(f"member {k}: {layer.name}")
    if not layers:
        raise ExplainUnavailable("; ".join(notes))
    return Explanation(total / weight_sum, classes, ", ".join(layers), notes)


def _grad_cam(
    model: nn.Module, layer: CamLayer, x: torch.Tensor, classes: np.ndarray
) -> np.ndarray:
    """pytorch-grad-cam's GradCAM of `layer` for `classes`, float32 (N, H, W) in [0, 1]."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    # Gradients flow to the input, not the weights: nothing is left in the parameters' .grad,
    # and a model whose weights are all frozen is explained all the same.
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    cam = GradCAM(model=model, target_layers=[layer.module], reshape_transform=layer.reshape)
    try:
        with torch.enable_grad():
            maps = cam(
                input_tensor=x.detach().clone().requires_grad_(True),
                targets=[ClassifierOutputTarget(int(c)) for c in classes],
            )
    finally:
        cam.activations_and_grads.release()  # its hooks; not `with`: its __exit__ eats IndexError
        for p in trainable:
            p.requires_grad_(True)
    return np.clip(np.nan_to_num(np.asarray(maps, dtype=np.float32)), 0.0, 1.0)


@dataclass(frozen=True)
class _Stage:
    name: str  # its module, as feature_info names it
    channels: int
    reduction: int  # input pixels per map pixel (a side)


def cam_layer(model: nn.Module, x: torch.Tensor) -> CamLayer:
    """The layer Grad-CAM reads in `model` for inputs like `x` (1, C, H, W); see the module
    docstring. Raises ExplainUnavailable with the reason when there is none."""
    infos = list(getattr(model, "feature_info", None) or [])
    names = {name for name, _ in model.named_modules()}
    stages = [
        _Stage(str(info["module"]), int(info["num_chs"]), int(info.get("reduction") or 1))
        for info in infos
        if info.get("module") in names and "num_chs" in info
    ]
    kind = type(model).__name__
    if not stages:
        raise ExplainUnavailable(f"{kind} lists no stages (feature_info), so no layer to explain")
    shapes = _output_shapes(model, [stage.name for stage in stages], x)
    seen: list[str] = []
    for stage in reversed(stages):
        shape = shapes.get(stage.name)
        if shape is None:
            continue
        found = _map_layer(model, stage, shape) or _token_layer(model, stage, shape, x)
        if found is not None:
            layer, (height, width) = found
            if min(height, width) >= MIN_SIDE:
                return layer
            seen.append(f"{stage.name} {height}×{width}")
    if not seen:
        raise ExplainUnavailable(f"no stage of {kind} gives a 2-D feature map or patch tokens")
    raise ExplainUnavailable(
        f"{kind} has no stage whose map is at least {MIN_SIDE}×{MIN_SIDE} px at "
        f"{x.shape[-2]}×{x.shape[-1]} px input (deepest first: {', '.join(seen)}); larger "
        "images would give one"
    )


def _map_layer(
    model: nn.Module, stage: _Stage, shape: tuple[int, ...]
) -> tuple[CamLayer, tuple[int, int]] | None:
    """A stage with a 2-D feature map, NCHW or NHWC (told apart by its channel count)."""
    if len(shape) != 4:
        return None
    module = model.get_submodule(stage.name)
    if shape[1] == stage.channels:
        return CamLayer(stage.name, module, _nchw), (shape[2], shape[3])
    if shape[3] == stage.channels:
        return CamLayer(stage.name, module, _nhwc), (shape[1], shape[2])
    return None


def _token_layer(
    model: nn.Module, stage: _Stage, shape: tuple[int, ...], x: torch.Tensor
) -> tuple[CamLayer, tuple[int, int]] | None:
    """A stage of tokens (N, L, D), laid back on the patch grid: the stage's own output when it
    holds patch tokens only (the head pools them, or reads a class token added later), else
    the first normalisation inside it (module docstring)."""
    if len(shape) != 3 or shape[2] != stage.channels:
        return None
    allowed = {0, int(getattr(model, "num_prefix_tokens", 0) or 0)}
    for height, width in _token_grids(model, stage, x):
        prefix = shape[1] - height * width  # class, distillation and register tokens first
        if prefix in allowed:
            break
    else:
        return None

    def tokens_to_grid(tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, prefix:, :].reshape(tokens.shape[0], height, width, tokens.shape[2])
        return patches.permute(0, 3, 1, 2)

    block = model.get_submodule(stage.name)
    if prefix == 0:
        return CamLayer(stage.name, block, tokens_to_grid), (height, width)
    norm = next(
        ((n, m) for n, m in block.named_modules() if n and type(m).__name__.endswith("Norm")),
        None,
    )
    if norm is None:
        return None
    return CamLayer(f"{stage.name}.{norm[0]}", norm[1], tokens_to_grid), (height, width)


def _token_grids(model: nn.Module, stage: _Stage, x: torch.Tensor) -> list[tuple[int, int]]:
    """The (rows, columns) the stage's patch tokens may lie in, for an input like `x`: the
    model's patch embedding's grid, else the stage's reduction rounded down and up."""
    height, width = int(x.shape[-2]), int(x.shape[-1])
    embeds: list[Any] = [getattr(model, "patch_embed", None), getattr(model, "stem", None)]
    for embed in embeds:
        if hasattr(embed, "dynamic_feat_size"):
            grid = embed.dynamic_feat_size((height, width))
            return [(int(grid[0]), int(grid[1]))]
        if getattr(embed, "grid_size", None) is not None:
            return [(int(embed.grid_size[0]), int(embed.grid_size[1]))]
    r = stage.reduction
    return [(height // r, width // r), (-(-height // r), -(-width // r))]


def _nchw(maps: torch.Tensor) -> torch.Tensor:
    return maps.clone()  # a copy: an in-place op later in the network must not change it


def _nhwc(maps: torch.Tensor) -> torch.Tensor:
    return maps.permute(0, 3, 1, 2).clone()


@torch.no_grad()
def _output_shapes(
    model: nn.Module, names: Sequence[str], x: torch.Tensor
) -> dict[str, tuple[int, ...]]:
    """What shape each named module outputs for `x` (one forward pass with hooks)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def keep(name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            if isinstance(output, torch.Tensor):
                shapes[name] = tuple(output.shape)

        return hook

    handles = [model.get_submodule(n).register_forward_hook(keep(n)) for n in names]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return shapes
