"""Look inside a network: its first convolution and its feature maps, stage by stage.

A model's stages are what its `feature_info` names (timm's description of a backbone; the plain
CNN's lists each block's max-pool). Their maps come from timm's own feature extraction,
`forward_intermediates` (NCHW maps, also for vision transformers), and, for a model without it,
from forward hooks on those modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


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
