"""A data set ready for trials: discovered, split, and decoded once per process.

Decoding and resizing happen once per decode key (size, channels, resize policy) and are shared
by every trial of a study run in this process; normalisation and augmentation are cheap and
happen per batch. A corrupt or truncated file is skipped and listed, never fatal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from automl_clf.data.discover import Sample, SkippedFile, class_counts, discover
from automl_clf.data.preprocess import Decoding
from automl_clf.data.split import Splits, fingerprint, split
from automl_clf.errors import DataError
from automl_clf.spec.models import DataSpec

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitArrays:
    """One split's decoded pixels, labels and source files, in the same order."""

    pixels: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray  # int64 (N,)
    paths: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def concat(*parts: SplitArrays) -> SplitArrays:
        return SplitArrays(
            np.concatenate([p.pixels for p in parts]),
            np.concatenate([p.labels for p in parts]),
            tuple(path for p in parts for path in p.paths),
        )


@dataclass
class Dataset:
    """Discovered classes, the fixed split, and decoded pixels cached per decode key."""

    root: Path
    classes: list[str]
    splits: Splits
    fingerprint: str  # of the split: which file is where (see data/split.py)
    skipped: list[SkippedFile]
    presplit: bool  # the root had train/val/test folders
    _decoded: dict[Decoding, dict[str, SplitArrays]] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def counts(self) -> dict[str, list[int]]:
        """Images per class in each split (before decoding; corrupt files are still counted)."""
        return {n: class_counts(s, self.n_classes) for n, s in self.splits.by_name().items()}

    def arrays(self, decoding: Decoding) -> dict[str, SplitArrays]:
        """Every split decoded with `decoding`; computed once per process and decoding."""
        if decoding not in self._decoded:
            self._decoded[decoding] = {
                name: self._decode(name, samples, decoding)
                for name, samples in self.splits.by_name().items()
            }
        return self._decoded[decoding]

    def _decode(self, name: str, samples: list[Sample], pre: Decoding) -> SplitArrays:
        pixels, labels, paths = [], [], []
        for sample in samples:
            try:
                pixels.append(pre.load_file(sample.path))
            except (OSError, ValueError, SyntaxError) as exc:  # what Pillow raises on bad files
                self.skipped.append(SkippedFile(sample.path, f"cannot decode: {exc}"))
                continue
            labels.append(sample.label)
            paths.append(sample.path)
        missing = sorted(set(range(self.n_classes)) - set(labels))
        if missing:
            names = ", ".join(self.classes[i] for i in missing)
            raise DataError(
                f"after skipping unreadable files, the {name} split holds no image of class(es) "
                f"{names}; see the skipped files listed by `autoclf validate`"
            )
        shape = (0, pre.image_size, pre.image_size, pre.channels)
        stacked = np.stack(pixels) if pixels else np.zeros(shape, np.uint8)
        return SplitArrays(stacked, np.asarray(labels, dtype=np.int64), tuple(paths))


def load_dataset(spec: DataSpec) -> Dataset:
    """Discover and split the spec's data folder (no decoding yet: that is `Dataset.arrays`)."""
    discovered = discover(spec.root)
    splits = split(discovered, spec.split)
    return Dataset(
        root=discovered.root,
        classes=discovered.classes,
        splits=splits,
        fingerprint=fingerprint(splits, discovered),
        skipped=list(discovered.skipped),
        presplit=discovered.presplit,
    )
