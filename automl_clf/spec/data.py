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
    """Share of the images held out for validation (what trials are judged and pruned on);
    used only when there is no val/ folder (or manifest split)."""
    test: Annotated[float, Field(gt=0, lt=1)] = 0.15
    """Share of the images held out for the final test, seen once by the exported model; used
    only when there is no test/ folder (or manifest split)."""
    seed: Seed = 0
    """The split's seed: the same seed and files always give the same split."""

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

    root: Path | None = None
    """The image folder: <root>/<class>/* (split by `split`) or <root>/{train,val,test}/<class>/*
    (used as given). Relative to the spec's folder. Give root or manifest."""
    manifest: Path | None = None
    """Or a CSV with a header and columns path,label[,split]; paths relative to the CSV's
    folder."""
    image_size: ImageSize = 32
    """Side of the square images the network sees, pixels; every image is resized to it.
    Training cost grows with its square."""
    channels: Channels = 3
    """1 = grayscale, 3 = RGB; every image is converted to this."""
    resize: Resize = "squash"
    """squash: stretch to a square; letterbox: fit inside and pad with black; center_crop:
    resize the shorter side, then crop the centre."""
    normalize: Normalize = "auto"
    """imagenet: what pretrained weights expect (a timm backbone's own pretrained mean/std,
    ImageNet's for the CNN); dataset: the training split's; none; auto: imagenet for timm
    backbones, dataset for the plain CNN."""
    split: SplitSpec = SplitSpec()
    """How a root without train/val/test folders is split (stratified, seeded)."""
    duplicates: Literal["drop", "keep"] = "drop"
    """drop: remove from val/test every image whose exact content is also in an earlier split
    (train, then val), so no score is inflated by leakage; keep: only report them."""
    near_duplicates: Literal["group", "warn", "off"] = "group"
    """Images that look alike though their files differ (resized, re-encoded, slightly cropped
    or brightened copies), found by perceptual hash and confirmed on the pixels. group: keep
    each cluster of them in one split, so held-out scores are honest (only the files of
    clusters that straddle splits move; with a train/val/test layout or a manifest's split
    column nothing can move, and they are reported); warn: only report them; off: do not look
    (saves decoding every image once at 32 px)."""
    loading: Literal["auto", "memory", "stream"] = "auto"
    """memory: decoded images in RAM; stream: read from the on-disk cache by DataLoader
    workers (memory-mapped below the machine's memory, else losslessly compressed WebP shards:
    the same pixels); auto: memory when the decoded set takes under a quarter of the machine's
    memory."""
    workers: Annotated[int, Field(ge=0, le=64)] | None = None
    """DataLoader workers when streaming; default: one per CPU core."""
    cache: bool = True
    """Keep decoded pixels on disk, keyed by file content and decoding, so each file is
    decoded once per machine."""
    cache_dir: Path | None = None
    """Where decoded pixels are kept; default: studies/cache/ beside the study databases."""

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
