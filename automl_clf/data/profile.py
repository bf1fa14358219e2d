"""What a data set looks like before any spec exists: layout, classes and counts, and the
images' typical size and colour, for `autoclf init` (scaffold.py) to choose a spec from.

Discovery is the data room's own (data/discover.py: the same layouts, skipped files and errors
as training will meet). The images are not decoded: a few hundred, evenly spaced over the
sorted file list (so every class is represented in proportion), are opened for their headers
only, which Pillow reads without the pixels, so profiling a large folder takes about a second.
"""

from __future__ import annotations

import statistics
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from automl_clf.data.discover import (
    Discovered,
    SkippedFile,
    class_counts,
    discover,
    discover_manifest,
)
from automl_clf.errors import DataError

N_SAMPLED = 300  # image headers read
# Pillow modes without colour; a palette ("P") image counts when its palette is all greys.
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


@dataclass(frozen=True)
class ImageSizes:
    """The sampled images' headers: sizes in pixels and colour."""

    n_read: int
    n_unreadable: int  # headers Pillow could not read (corrupt, not really an image)
    short_sides: tuple[int, ...]  # min(width, height) of each image read
    aspects: tuple[float, ...]  # long side / short side of each image read
    n_gray: int  # images read without colour

    @property
    def n_sampled(self) -> int:
        return self.n_read + self.n_unreadable

    @property
    def median_short_side(self) -> float:
        return statistics.median(self.short_sides) if self.short_sides else 0.0

    @property
    def median_aspect(self) -> float:
        return statistics.median(self.aspects) if self.aspects else 1.0

    @property
    def all_gray(self) -> bool:
        return self.n_read > 0 and self.n_gray == self.n_read


@dataclass(frozen=True)
class DataProfile:
    """A data set at a glance.

    `counts` holds images per class for each split the data gives (train/val/test folders or
    the manifest's split column), or for "all" when autoclf is to split it.
    """

    source: Path  # the folder or the CSV manifest given
    manifest: bool
    classes: list[str]
    counts: dict[str, list[int]]
    skipped: list[SkippedFile]
    images: ImageSizes
    found: Discovered = field(repr=False)  # what discovery returned, to try splits on

    @property
    def presplit(self) -> bool:
        return "all" not in self.counts

    @property
    def n_images(self) -> int:
        return sum(sum(c) for c in self.counts.values())

    @property
    def per_class(self) -> list[int]:
        """Images per class over every split."""
        return [sum(c[i] for c in self.counts.values()) for i in range(len(self.classes))]

    @property
    def train_counts(self) -> list[int]:
        """Images per class that can train: the train split's, or all of an unsplit set."""
        return self.counts.get("train") or self.counts["all"]

    @property
    def imbalance(self) -> float:
        """Largest over smallest class (training images)."""
        counts = self.train_counts
        return max(counts) / max(1, min(counts))


def profile_data(source: Path, n_sampled: int = N_SAMPLED) -> DataProfile:
    """Profile an image folder (`<root>/<class>/*` or `<root>/{train,val,test}/<class>/*`) or a
    CSV manifest (`path,label[,split]`).

    Raises:
        DataError: no such folder or file, a file that is not a CSV, or a data set that
            training would refuse (fewer than two classes, an empty class, …).
    """
    if source.is_dir():
        found = discover(source)
    elif source.is_file() and source.suffix.lower() == ".csv":
        found = discover_manifest(source)
    elif source.exists():
        raise DataError(
            f"{source} is neither a folder of images nor a CSV manifest (path,label[,split]); "
            "give the folder that holds one sub-folder per class"
        )
    else:
        raise DataError(f"no such folder: {source}; give the folder of images (or a CSV)")
    counts = {
        split: class_counts(found.samples[split], len(found.classes)) for split in found.samples
    }
    return DataProfile(
        source=source,
        manifest=not source.is_dir(),
        classes=found.classes,
        counts=counts,
        skipped=found.skipped,
        images=read_headers(_evenly_spaced(found, n_sampled)),
        found=found,
    )


def _evenly_spaced(found: Discovered, n: int) -> list[Path]:
    paths = [s.path for part in found.samples.values() for s in part]
    if len(paths) <= n:
        return paths
    return [paths[i * len(paths) // n] for i in range(n)]


def read_headers(paths: list[Path]) -> ImageSizes:
    """Sizes and colour of `paths` from their headers (no pixels are decoded); EXIF rotation
    does not matter here: it swaps width and height, not the short side or the aspect."""
    short, aspects, n_gray, n_bad = [], [], 0, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a large image's DecompressionBombWarning
        for path in paths:
            try:
                with Image.open(path) as image:
                    width, height = image.size
                    gray = _is_gray(image)
            except (OSError, ValueError, Image.DecompressionBombError):
                n_bad += 1
                continue
            if min(width, height) < 1:
                n_bad += 1
                continue
            short.append(min(width, height))
            aspects.append(max(width, height) / min(width, height))
            n_gray += gray
    return ImageSizes(len(short), n_bad, tuple(short), tuple(aspects), n_gray)


def _is_gray(image: Image.Image) -> bool:
    if image.mode in GRAY_MODES:
        return True
    if image.mode in ("P", "PA"):
        palette = image.getpalette() or []
        triples = zip(palette[0::3], palette[1::3], palette[2::3], strict=False)
        return all(r == g == b for r, g, b in triples)
    return False


def describe_counts(profile: DataProfile, limit: int = 8) -> str:
    """`3 classes: '0' 30, '1' 30, '7' 30` or, for many, `102 classes, 20 to 258 images each
    (median 40)`; class names shown as repr, so a name with odd characters reads safely."""
    per_class = profile.per_class
    n = len(profile.classes)
    if n <= limit:
        pairs = ", ".join(
            f"{name!r} {count}" for name, count in zip(profile.classes, per_class, strict=True)
        )
        return f"{n} classes: {pairs}"
    median = statistics.median(per_class)
    return f"{n} classes, {min(per_class)} to {max(per_class)} images each (median {median:g})"


def skipped_summary(skipped: list[SkippedFile]) -> str:
    """`12 files skipped (not an image file (.txt): 10, empty file: 2)`; "" for none."""
    if not skipped:
        return ""
    reasons = Counter(s.reason for s in skipped)
    parts = ", ".join(f"{reason}: {count}" for reason, count in reasons.most_common(3))
    more = f", {len(reasons) - 3} other reasons" if len(reasons) > 3 else ""
    return f"{len(skipped)} file(s) skipped ({parts}{more})"
