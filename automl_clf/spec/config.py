"""One concrete, fully typed configuration: what a trial trains, retrains and exports.

A `TrialConfig` has no search spaces and no defaults of its own: `spec/resolve.py` fills every
field from the spec. It is stored as JSON on each Optuna trial (user attribute `config`) and in
every export's `model.json`, so `best`, the export and `predict` never re-derive it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from automl_clf.spec.policies import POLICIES

# The side of the square images, pixels: the spec's range, and so also all a stored config or an
# export's model.json may claim (a damaged one must not make predict allocate terabytes).
ImageSize = Annotated[int, Field(ge=4, le=1024)]

# The values of the spec's categorical fields, written once: the spec (spec/data.py, model.py,
# train.py, augment.py) accepts these, a search space may choose among them, and a resolved
# config holds one.
Channels = Literal[1, 3]
Resize = Literal["squash", "letterbox", "center_crop"]
Normalize = Literal["auto", "imagenet", "dataset", "none"]
Transfer = Literal["finetune", "freeze", "partial"]
Optimizer = Literal["adam", "adamw", "sgd"]
Schedule = Literal["constant", "cosine", "onecycle", "step", "plateau"]
ClassWeighting = Literal["none", "balanced", "effective_number"]
Sampling = Literal["shuffle", "oversample"]
# Where training runs: auto (CUDA when present), cpu, cuda (the current GPU) or cuda:N.
DEVICE_FORMS = ("auto", "cpu", "cuda", "cuda:N")
_DEVICE_PATTERN = r"^(auto|cpu|cuda(:[0-9]{1,3})?)$"


def check_device_name(value: str) -> str:
    """`value` when it names a device autoclf can train on; whether this machine has it is
    `train/device.py`'s question, asked before the first trial."""
    if re.fullmatch(_DEVICE_PATTERN, value):
        return value
    raise ValueError(
        f"unknown device {value!r}: use {', '.join(DEVICE_FORMS[:-1])} or {DEVICE_FORMS[-1]} "
        "(N: a GPU's index among those torch sees, from 0; e.g. cuda:1)"
    )


Device = Annotated[
    str,
    AfterValidator(check_device_name),
    Field(json_schema_extra={"pattern": _DEVICE_PATTERN, "examples": ["auto", "cpu", "cuda:1"]}),
]

if TYPE_CHECKING:
    PolicyName = str
else:
    PolicyName = Literal[POLICIES.kinds]  # every registered policy (spec/policies.py)


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(ConfigModel):
    image_size: ImageSize
    channels: Channels
    resize: Resize
    normalize: Normalize


class CNNConfig(ConfigModel):
    filters: tuple[int, ...]
    kernel_size: int
    convs_per_block: int
    batch_norm: bool
    global_pool: bool
    fc_width: int


class ModelConfig(ConfigModel):
    backbone: str  # "cnn" or a timm model name
    dropout: float
    cnn: CNNConfig | None  # set exactly when backbone == "cnn"
    # The weights this trial starts from (spec/model.py): true (the backbone's default
    # pretrained weights), a Hub repo (`timm/<model>.<tag>`, `hf-hub:<org>/<name>`), `cache`, or
    # the absolute path of a local file; None: random initialisation.
    pretrained: bool | str | None
    transfer: Transfer  # "finetune" (all) without pretrained
    unfreeze_stages: int | None  # set exactly when transfer == "partial"
    backbone_lr_scale: float | None  # set when pretrained weights are trained (not freeze)

    @classmethod
    def plain_timm(cls, backbone: str) -> ModelConfig:
        """A timm backbone as it comes: no dropout, random weights (shape checks, fixtures)."""
        return cls(
            backbone=backbone,
            dropout=0.0,
            cnn=None,
            pretrained=None,
            transfer="finetune",
            unfreeze_stages=None,
            backbone_lr_scale=None,
        )


class TrainConfig(ConfigModel):
    epochs: int
    batch_size: int
    optimizer: Optimizer
    lr: float
    weight_decay: float
    momentum: float | None  # set exactly when optimizer == "sgd"
    nesterov: bool | None  # set exactly when optimizer == "sgd"
    label_smoothing: float
    schedule: Schedule
    warmup_epochs: float | None  # None for onecycle (it warms up by itself)
    step_size: int
    gamma: float
    plateau_patience: int
    grad_clip: float | None
    early_stopping_patience: int | None
    class_weighting: ClassWeighting
    sampling: Sampling
    seed: int
    device: Device
    mixed_precision: bool
    threads: int | None


class AugmentConfig(ConfigModel):
    policy: PolicyName
    magnitude: float
    hflip: bool
    transforms: tuple[dict[str, object], ...] | None  # a custom albumentations list
    mixup: float  # share of batches
    mixup_alpha: float | None  # set exactly when mixup > 0
    cutmix: float
    cutmix_alpha: float | None  # set exactly when cutmix > 0


class TrialConfig(ConfigModel):
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    augment: AugmentConfig
