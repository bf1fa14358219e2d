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
and its name and module in `OWN_BACKBONES` (spec/backbones.py: `models/factory.py` imports
those modules; the spec knows the names from there without importing torch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from automl_clf.spec import backbones
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


# The spec's registry of our backbones (spec/backbones.py: the spec knows every name registered
# here without importing this room), typed with what this room puts in it.
BACKBONES = cast("Registry[Backbone]", backbones.BACKBONES)
OWN_BACKBONES = backbones.OWN_BACKBONES


def register_backbone(
    *, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register the decorated entrypoint as a backbone named after the function (as timm)."""

    def register(create: Callable[..., Any]) -> Callable[..., Any]:
        BACKBONES.register(create.__name__)(Backbone(create, mean, std))
        return create

    return register
