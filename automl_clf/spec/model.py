"""The `model` section: the plain CNN (`cnn`, its own `cnn` sub-section) or any timm model by
name, optionally starting from pretrained weights (models/pretrained.py finds and loads them).
The names a backbone may take, and the weights timm has, are checked in spec/backbones.py."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from automl_clf.spec.config import Transfer
from automl_clf.spec.fields import (
    Fraction,
    NonNegativeInt,
    OddKernel,
    PositiveInt,
    library_checks,
    resolve_path,
)
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
    pretrained: bool | str | None = None
    """The weights a timm backbone starts from, as timm users get them: true, the backbone's
    default pretrained weights (or those of the tag it names, `resnet18.a1_in1k`) from the
    Hugging Face cache (HF_HOME / HF_HUB_CACHE), downloaded there once before the first trial
    when missing unless HF_HUB_OFFLINE=1 (the plain CNN, which has none, trains from scratch);
    `cache`: the same, never downloaded; `timm/<model>.<tag>` or
    `hf-hub:<org>/<name>[@revision]`: that Hub repository's weights; or a local .safetensors /
    .pth file. Default: random weights. `autoclf backbones --pretrained 'resnet*'` lists timm's."""
    transfer: Tunable[Transfer] = "finetune"
    """With pretrained weights: finetune (train everything), freeze (train the head only) or
    partial (train the head and the last `unfreeze_stages` stages)."""
    unfreeze_stages: Tunable[PositiveInt] = 1
    """Stages trained with transfer: partial, counted from the head."""
    backbone_lr_scale: Tunable[Annotated[float, Field(gt=0, le=1)]] = 1.0
    """The pretrained part's learning rate as a multiple of train.lr (the head gets lr)."""

    @field_validator("backbone", mode="after")
    @classmethod
    def _known_backbone(cls, value: Any, info: ValidationInfo) -> Any:
        from automl_clf.spec.backbones import check_backbone_name  # it reads PLAIN_CNN here

        for name in candidate_values(value):
            check_backbone_name(name, import_timm=library_checks(info))
        return value

    @field_validator("pretrained", mode="after")
    @classmethod
    def _weights_source(cls, value: bool | str | None, info: ValidationInfo) -> bool | str | None:
        if value is None or value is False:
            return None
        if value is True or value == PRETRAINED_CACHE:
            return value
        path = resolve_path(value, info)
        if path.is_file():
            return str(path)
        if hub_repo(value) is not None:  # raises on a malformed repository id
            return value
        raise ValueError(
            f"weights file not found: {path} (pretrained takes a local .safetensors or .pth "
            "file; true for the backbone's pretrained weights from the Hugging Face Hub; "
            "timm/<model>.<tag> or hf-hub:<org>/<name> for a Hub repository's)"
        )

    @model_validator(mode="after")
    def _pretrained_fits_backbones(self, info: ValidationInfo) -> ModelSpec:
        if self.pretrained is None:
            return self
        names = [str(name) for name in candidate_values(self.backbone)]
        timm_backbones = [name for name in names if name != PLAIN_CNN]
        if self.pretrained is True or self.pretrained == PRETRAINED_CACHE:
            if not timm_backbones:
                raise ValueError(
                    f"pretrained: {self.pretrained!r} loads a timm backbone's weights, but the "
                    "only backbone is the plain CNN, which has none; remove pretrained, or "
                    "name a timm backbone (autoclf backbones --pretrained 'resnet*')"
                )
            from automl_clf.spec.backbones import check_has_pretrained, timm_names

            known = timm_names(import_timm=library_checks(info))
            if known is not None:  # else the pass with library checks does it
                for name in timm_backbones:
                    check_has_pretrained(name, known)
            return self
        if PLAIN_CNN in names:
            raise ValueError(
                f"pretrained: {self.pretrained} holds one network's weights, which the plain "
                "CNN cannot load (it always trains from scratch); remove cnn from "
                "model.backbone, or use pretrained: true (each timm backbone starts from its "
                "own pretrained weights, the plain CNN from scratch)"
            )
        if not library_checks(info):
            return self
        from automl_clf.spec.backbones import check_repo_architecture  # heavy: timm

        for name in timm_backbones:
            check_repo_architecture(str(self.pretrained), name)
        return self


TIMM_MIN_SIZE = 64  # px: timm backbones downsample 32×, so below this they see 1–2 px


def takes_pretrained(backbone: str) -> bool:
    """Whether a trial of `backbone` loads `model.pretrained` (the plain CNN never does)."""
    return backbone != PLAIN_CNN


HUB_PREFIX = "hf-hub:"  # timm's prefix for a model on the Hugging Face Hub
TIMM_HUB_ORG = "timm"  # where timm's own pretrained weights live: timm/<model>.<tag>
_HUB_REPO = re.compile(r"(?P<repo>[\w.-]+/[\w.-]+)(@(?P<revision>[\w./-]+))?")


def hub_repo(value: str) -> tuple[str, str | None] | None:
    """(repository id, revision or None) when `value` names Hugging Face Hub weights
    (`hf-hub:<org>/<name>[@revision]`, or timm's own `timm/<model>.<tag>`); None when it does
    not (a local file).

    Raises:
        ValueError: the `hf-hub:` or `timm/` form around something that is no repository id.
    """
    if value.startswith(HUB_PREFIX):
        body = value[len(HUB_PREFIX) :]
    elif value.startswith(f"{TIMM_HUB_ORG}/"):
        body = value
    else:
        return None
    match = _HUB_REPO.fullmatch(body)
    if match is None:
        raise ValueError(
            f"{value!r} is not a Hugging Face Hub repository: write hf-hub:<org>/<name> "
            "(optionally @<revision>), e.g. hf-hub:timm/resnet18.a1_in1k; list timm's with: "
            "autoclf backbones --pretrained 'resnet*'"
        )
    return match["repo"], match["revision"]
