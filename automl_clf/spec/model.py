"""The `model` section: the plain CNN (`cnn`, its own `cnn` sub-section) or any timm model by
name, optionally from local pretrained weights."""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from automl_clf.spec.config import Transfer
from automl_clf.spec.fields import Fraction, NonNegativeInt, OddKernel, PositiveInt, resolve_path
from automl_clf.spec.space import SpecModel, Tunable, candidate_values

# The default backbone, and the one whose architecture the `model.cnn` section describes.
PLAIN_CNN = "cnn"
PRETRAINED_CACHE = "cache"


class CNNSpec(SpecModel):
    """The plain CNN: blocks of [conv → BN → ReLU] × convs_per_block → max-pool, then the head.

    These values are only searched in trials whose backbone is `cnn`.
    """

    filters: Tunable[Annotated[list[PositiveInt], Field(min_length=1, max_length=8)]] = Field(
        default_factory=lambda: [32, 64], json_schema_extra={"default": [32, 64]}
    )
    """Output channels of each conv block, one entry per block; each block halves the image
    (until it is 1 px). Searched as choices of whole lists: {choices: [[16, 32], [32, 64]]}."""
    kernel_size: Tunable[OddKernel] = 3
    """Convolution kernel side, odd (to keep 'same' padding)."""
    convs_per_block: Tunable[Annotated[int, Field(ge=1, le=4)]] = 1
    """Convolutions (conv → BN → ReLU) in each block before its max-pool."""
    batch_norm: Tunable[bool] = True
    """Batch normalisation after each convolution."""
    global_pool: Tunable[bool] = False
    """Global average pool instead of flatten before the head: far fewer head weights on large
    images."""
    fc_width: Tunable[NonNegativeInt] = 128
    """Hidden units in the head; 0 = no hidden layer."""

    @field_validator("kernel_size", mode="after")
    @classmethod
    def _odd(cls, value: Any) -> Any:
        for k in candidate_values(value):
            if k % 2 == 0:
                raise ValueError(f"kernel size must be odd (to keep 'same' padding), got {k}")
        return value


class ModelSpec(SpecModel):
    """The network: the plain CNN (`cnn`) or any timm model by name, optionally pretrained."""

    backbone: Tunable[str] = PLAIN_CNN
    """`cnn` (the plain CNN of `model.cnn`) or a timm model name; `autoclf backbones
    'resnet*'` lists them. Search several with {choices: [cnn, resnet18]}."""
    dropout: Tunable[Fraction] = 0.2
    """Dropout probability before the final layer."""
    cnn: CNNSpec = CNNSpec()
    """The plain CNN's architecture, used by trials whose backbone is `cnn`."""
    pretrained: str | None = None
    """A local weights file (.safetensors, or a torch checkpoint read with weights_only=True),
    or `cache`: timm's own pretrained weights from the local Hugging Face cache (never
    downloaded: a missing file is an error). timm backbones only."""
    transfer: Tunable[Transfer] = "finetune"
    """With pretrained weights: finetune (train everything), freeze (train the head only) or
    partial (train the head and the last `unfreeze_stages` stages)."""
    unfreeze_stages: Tunable[PositiveInt] = 1
    """Stages trained with transfer: partial, counted from the head."""
    backbone_lr_scale: Tunable[Annotated[float, Field(gt=0, le=1)]] = 1.0
    """The pretrained part's learning rate as a multiple of train.lr (the head gets lr)."""

    @field_validator("backbone", mode="after")
    @classmethod
    def _known_backbone(cls, value: Any) -> Any:
        for name in candidate_values(value):
            check_backbone_name(name)
        return value

    @field_validator("pretrained", mode="after")
    @classmethod
    def _weights_exist(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value == PRETRAINED_CACHE:
            return value
        path = resolve_path(value, info)
        if not path.is_file():
            raise ValueError(
                f"weights file not found: {path} (autoclf never downloads weights: point "
                "pretrained at a local .safetensors or .pth file, or use `cache` for weights "
                "already in the local Hugging Face cache)"
            )
        return str(path)

    @model_validator(mode="after")
    def _pretrained_needs_timm(self) -> ModelSpec:
        if self.pretrained is not None and PLAIN_CNN in candidate_values(self.backbone):
            raise ValueError(
                "pretrained: weights can only be loaded into a timm backbone; the plain CNN "
                "is always trained from scratch"
            )
        return self


def check_backbone_name(name: str) -> None:
    """Raise a ValueError naming close matches when `name` is neither one of our backbones
    (models/registry.py) nor a timm model."""
    if name == PLAIN_CNN:
        return  # the default: known without importing torch and timm
    # Heavy (torch, timm): only imported when a spec names another backbone.
    from automl_clf.models.factory import is_backbone, list_backbones

    if is_backbone(name):
        return
    close = difflib.get_close_matches(name, list_backbones(), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    prefix = re.match(r"[A-Za-z_]*", name)
    pattern = f"{prefix.group(0) if prefix else ''}*"
    raise ValueError(
        f"Unknown backbone {name!r}.{hint} List them with: autoclf backbones '{pattern}'"
    )
