"""Look inside a network: its first convolution and its feature maps, stage by stage.

plain CNN       a stage ends at each block's max-pool (the last block may end without one)
timm models     timm's own feature extraction, `forward_intermediates` (NCHW maps, also for
                vision transformers); a model without it falls back to forward hooks on the
                modules its `feature_info` names
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from automl_clf.models.cnn import PlainCNN


@dataclass(frozen=True)
class FeatureMap:
    name: str  # the module it came from, e.g. "features.3" or "layer2"
    maps: torch.Tensor  # (C, H, W) for one image


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    """The first 2-D convolution in the model's module order (the stem), if it has one."""
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


@torch.no_grad()
def feature_maps(model: nn.Module, x: torch.Tensor) -> list[FeatureMap]:
    """The feature maps of one image `x` (1, C, H, W) at each stage, input side first."""
    model.eval()
    if isinstance(model, PlainCNN):
        return _hooked(model, _cnn_stages(model), x)
    infos = list(getattr(model, "feature_info", None) or [])
    names = [str(info.get("module", f"stage{i}")) for i, info in enumerate(infos)]
    intermediates: Any = getattr(model, "forward_intermediates", None)
    if intermediates is not None:
        try:
            maps = intermediates(x, intermediates_only=True)
        except NotImplementedError:
            pass
        else:
            names += [f"stage{i}" for i in range(len(names), len(maps))]
            return [FeatureMap(n, m[0]) for n, m in zip(names, maps, strict=False) if m.ndim == 4]
    modules = [(name, model.get_submodule(name)) for name in names]
    return _hooked(model, modules, x)


def _cnn_stages(model: PlainCNN) -> list[tuple[str, nn.Module]]:
    layers = list(model.features.named_children())
    stages: list[tuple[str, nn.Module]] = [
        (f"features.{n}", m) for n, m in layers if isinstance(m, nn.MaxPool2d)
    ]
    if layers and not isinstance(layers[-1][1], nn.MaxPool2d):
        stages.append((f"features.{layers[-1][0]}", layers[-1][1]))
    return stages


def _hooked(
    model: nn.Module, modules: list[tuple[str, nn.Module]], x: torch.Tensor
) -> list[FeatureMap]:
    """Run `model` once with forward hooks on `modules`; keep the 4-D (NCHW) outputs."""
    captured: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            if isinstance(output, torch.Tensor) and output.ndim == 4:
                captured[name] = output.detach().clone()  # ReLU(inplace) may overwrite it later

        return hook

    handles = [module.register_forward_hook(keep(name)) for name, module in modules]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return [FeatureMap(name, captured[name][0]) for name, _ in modules if name in captured]
