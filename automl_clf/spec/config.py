"""One concrete, fully typed configuration: what a trial trains, retrains and exports.

A `TrialConfig` has no search spaces and no defaults of its own: `spec/resolve.py` fills every
field from the spec. It is stored as JSON on each Optuna trial (user attribute `config`) and in
every export's `model.json`, so `best`, the export and `predict` never re-derive it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(ConfigModel):
    image_size: int  # pixels, square
    channels: Literal[1, 3]
    resize: Literal["squash", "letterbox", "center_crop"]
    normalize: Literal["auto", "imagenet", "dataset", "none"]


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
    pretrained: str | None  # absolute path of a local weights file


class TrainConfig(ConfigModel):
    epochs: int
    batch_size: int
    optimizer: Literal["adam", "adamw", "sgd"]
    lr: float
    weight_decay: float
    momentum: float | None  # set exactly when optimizer == "sgd"
    label_smoothing: float
    schedule: Literal["constant", "cosine"]
    early_stopping_patience: int | None
    class_weighting: Literal["none", "balanced"]
    seed: int
    device: Literal["auto", "cpu", "cuda"]


class AugmentConfig(ConfigModel):
    policy: Literal["none", "light", "medium", "heavy"]
    hflip: bool
    transforms: tuple[dict[str, object], ...] | None  # a custom albumentations list


class TrialConfig(ConfigModel):
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    augment: AugmentConfig
