"""The `data` section: the images, how they are split, and how every image becomes a tensor
(training and predict alike)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from automl_clf.spec.config import Channels, ImageSize, Normalize, Resize
from automl_clf.spec.fields import Seed, resolve_path
from automl_clf.spec.space import SpecModel


class SplitSpec(SpecModel):
    """Fractions of a root without train/val/test folders; the split is stratified and seeded."""

    val: Annotated[float, Field(gt=0, lt=1)] = 0.15
    test: Annotated[float, Field(gt=0, lt=1)] = 0.15
    seed: Seed = 0

    @model_validator(mode="after")
    def _leave_training_data(self) -> SplitSpec:
        if self.val + self.test >= 0.9:
            raise ValueError(
                f"val + test must leave at least 10% for training, got "
                f"val={self.val} + test={self.test} = {self.val + self.test:.2f}"
            )
        return self


class DataSpec(SpecModel):
    """The images, and how every image is turned into a tensor (training and predict alike)."""

    root: Path | None = None  # <root>/<class>/* or <root>/{train,val,test}/<class>/*
    manifest: Path | None = None  # or a CSV with columns path,label[,split]
    image_size: ImageSize = 32  # pixels, square
    channels: Channels = 3  # 1 = grayscale, 3 = RGB; every image is converted to this
    # squash: stretch to a square; letterbox: fit inside and pad with black; center_crop: resize
    # the shorter side, then crop the centre
    resize: Resize = "squash"
    # imagenet: what pretrained weights expect (a timm backbone's own pretrained mean/std,
    # ImageNet's for the CNN); dataset: the training split's; auto: imagenet for timm backbones,
    # dataset for the plain CNN
    normalize: Normalize = "auto"
    split: SplitSpec = SplitSpec()
    # drop: remove from val/test every image whose exact content is also in an earlier split
    # (train, then val), so no score is inflated by leakage; keep: only report them
    duplicates: Literal["drop", "keep"] = "drop"
    # memory: decoded images in RAM; stream: read from the on-disk cache by DataLoader workers;
    # auto: memory when the decoded set takes under a quarter of the machine's memory
    loading: Literal["auto", "memory", "stream"] = "auto"
    workers: Annotated[int, Field(ge=0, le=64)] | None = None  # stream workers; default: cores
    cache: bool = True  # keep decoded pixels on disk, keyed by file content and decoding
    cache_dir: Path | None = None  # default: studies/cache/ beside the study databases

    @field_validator("root", "manifest", mode="after")
    @classmethod
    def _exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = resolve_path(value, info)
        folder = info.field_name == "root"
        if not (path.is_dir() if folder else path.is_file()):
            raise ValueError(
                f"{'folder' if folder else 'file'} not found: {path} (relative paths resolve "
                "against the spec's folder)"
            )
        return path

    @field_validator("cache_dir", mode="after")
    @classmethod
    def _resolve_cache_dir(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else resolve_path(value, info)

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.root is None) == (self.manifest is None):
            raise ValueError(
                "give exactly one of root (an image folder) or manifest (a CSV of path,label)"
            )
        if self.loading == "stream" and not self.cache:
            raise ValueError("loading: stream reads the on-disk cache; set cache: true")
        return self
