"""autoclf's own backbones by name, each with its pretrained config, ahead of timm's models.

Like timm's `register_model` (`timm/models/_registry.py`), an own backbone is an entrypoint
function registered under its name, taking timm's keyword arguments (`num_classes`, `in_chans`,
`drop_rate`, `img_size`, then its own), and it comes with a pretrained config: the mean and std
its weights expect (set on the built model as `pretrained_cfg`, as timm does), or none when it
has no weights (`data.normalize: auto` then normalises with the training split's statistics).
`models/factory.py` builds and describes every backbone, ours or timm's, through these entries
and `timm.create_model`, so a name is special-cased nowhere else; timm is imported only when a
timm model is named.

To add a backbone: a module in models/ whose entrypoint is decorated `@register_backbone()`,
and its name and module in `OWN_BACKBONES` below (`models/factory.py` imports those modules; the
spec knows the names from there without importing torch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from automl_clf.spec.model import PLAIN_CNN
from automl_clf.spec.registry import Registry

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Backbone:
    """An own backbone: its entrypoint and the preprocessing its weights expect."""

    # (num_classes=, in_chans=, drop_rate=, img_size=, **own) -> model
    create: Callable[..., nn.Module]
    # The per-channel mean and std (RGB, [0, 1] scale) its pretrained weights expect; None: it
    # has no pretrained weights, so nothing is expected.
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


BACKBONES: Registry[Backbone] = Registry("backbone")
# Our backbones by name -> the module that registers it (importing one imports torch):
# models/factory.py imports each, and the spec checks names against these without importing.
OWN_BACKBONES = {PLAIN_CNN: "automl_clf.models.cnn"}


def register_backbone(
    *, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register the decorated entrypoint as a backbone named after the function (as timm)."""

    def register(create: Callable[..., Any]) -> Callable[..., Any]:
        BACKBONES.register(create.__name__)(Backbone(create, mean, std))
        return create

    return register
