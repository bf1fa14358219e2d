"""Find the images of a data set and their labels.

Two folder layouts: `<root>/<class>/*` (autoclf splits it; see data/split.py) and
`<root>/{train,val,test}/<class>/*` (used as given); or a CSV manifest with columns
`path,label[,split]` (paths relative to the CSV's folder). Hidden files, files that are not images
by their extension, empty files and anything that is not a regular file (a FIFO would block the
reader forever) are skipped and counted, never fatal, and never opened; symlinks that leave the
root are not followed. Problems that make the data set unusable (a missing folder, an empty
class, fewer than two classes) are `DataError`s raised before any training.
"""

from __future__ import annotations

import csv
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from automl_clf.errors import DataError

# What Pillow decodes and autoclf supports (GIF: the first frame).
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # index into the sorted class names


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str


@dataclass
class Discovered:
    """What is under a root: class names in index order and the samples, by split if pre-split."""

    root: Path
    classes: list[str]
    samples: dict[str, list[Sample]]  # "all" for an unsplit root, else train/val/test
    skipped: list[SkippedFile] = field(default_factory=list)

    @property
    def presplit(self) -> bool:
        return "all" not in self.samples


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def discover(root: Path) -> Discovered:
    """List the samples under `root`, pre-split or not; see the module docstring."""
    if not root.is_dir():
        raise DataError(f"data.root: folder not found: {root}")
    subfolders = sorted(p.name for p in _visible_dirs(root))
    split_folders = [name for name in subfolders if name in SPLIT_NAMES]
    if "train" in split_folders:
        others = sorted(set(subfolders) - set(SPLIT_NAMES))
        if others:
            raise DataError(
                f"data.root {root} mixes split folders ({', '.join(split_folders)}) with other "
                f"folders ({', '.join(others)}): use either <root>/<class>/ or "
                "<root>/{train,val,test}/<class>/"
            )
        classes = sorted(p.name for p in _visible_dirs(root / "train"))
        _check_classes(classes, root / "train")
        skipped: list[SkippedFile] = []
        samples = {}
        for split in split_folders:
            extra = sorted({p.name for p in _visible_dirs(root / split)} - set(classes))
            if extra:
                raise DataError(
                    f"{root / split} has class folder(s) {', '.join(extra)} that train/ lacks; "
                    f"every split must use the classes of train/: {', '.join(classes)}"
                )
            samples[split] = _collect(root, root / split, classes, skipped, split)
        return Discovered(root, classes, samples, skipped)
    classes = subfolders
    _check_classes(classes, root)
    skipped = []
    return Discovered(root, classes, {"all": _collect(root, root, classes, skipped, "")}, skipped)


def _visible_dirs(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]


def _check_classes(classes: list[str], folder: Path) -> None:
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "none"
        raise DataError(
            f"{folder} needs at least 2 class folders (<root>/<class>/<image>), found {found}"
        )


def _collect(
    root: Path, folder: Path, classes: list[str], skipped: list[SkippedFile], split: str
) -> list[Sample]:
    """Every usable image of each class folder under `folder`, in sorted path order."""
    samples: list[Sample] = []
    real_root = root.resolve()
    for label, name in enumerate(classes):
        class_dir = folder / name
        found = []
        if class_dir.is_dir():
            for path in _walk(class_dir):
                reason = _skip_reason(path, real_root)
                if reason:
                    skipped.append(SkippedFile(path, reason))
                else:
                    found.append(Sample(path, label))
        if not found:
            where = f" in the {split} split" if split else ""
            raise DataError(
                f"class {name!r} has no usable image{where} ({class_dir}); add images or "
                "remove the folder"
            )
        samples.extend(found)
    return samples


def _walk(folder: Path) -> list[Path]:
    """Files below `folder`, sorted; symlinked folders are not entered (they may loop)."""
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath) / f for f in filenames)
    return sorted(files)


def special_file_kind(mode: int) -> str:
    """What a file that is not a regular one is (`st_mode` of a stat), or "" for a regular one:
    reading a FIFO or a device named `*.png` would block forever or never end."""
    kinds = (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    if stat.S_ISREG(mode):
        return ""
    return next((kind for test, kind in kinds if test(mode)), "a special file")


def _skip_reason(path: Path, real_root: Path) -> str:
    """Why `path` is not a usable image file, or "" if it is one; never opens it."""
    if path.name.startswith("."):
        return "hidden file"
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return f"not an image file ({path.suffix or 'no extension'})"
    if path.is_symlink() and not path.resolve().is_relative_to(real_root):
        return "symlink that leaves the data root"
    try:
        status = path.stat()
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    kind = special_file_kind(status.st_mode)
    if kind:
        return f"not a regular file ({kind})"
    if status.st_size == 0:
        return "empty file"
    return ""


def class_counts(samples: list[Sample], n_classes: int) -> list[int]:
    counts = Counter(s.label for s in samples)
    return [counts.get(i, 0) for i in range(n_classes)]


def discover_manifest(manifest: Path) -> Discovered:
    """Samples listed in a CSV manifest: `path,label[,split]`, with a header row.

    Paths are relative to the CSV's folder (or absolute). Rows naming a missing, hidden or
    non-image file are skipped and counted like files in a folder tree. `split` (train, val or
    test) must be given for every row or for none.
    """
    base = manifest.resolve().parent
    try:
        with manifest.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"data.manifest: cannot read {manifest}: {exc}") from None
    columns = set(rows[0]) if rows else set()
    if not {"path", "label"} <= columns:
        raise DataError(
            f"data.manifest {manifest} needs a header with columns path,label[,split]; "
            f"found {', '.join(sorted(columns)) or 'no rows'}"
        )
    with_split = [r for r in rows if (r.get("split") or "").strip()]
    if with_split and len(with_split) != len(rows):
        raise DataError(
            f"data.manifest {manifest}: {len(with_split)} of {len(rows)} rows give a split; give "
            "one for every row (train, val or test) or for none"
        )
    bad = sorted({r["split"] for r in with_split} - set(SPLIT_NAMES))
    if bad:
        raise DataError(
            f"data.manifest {manifest}: unknown split(s) {', '.join(bad)}; use train, val or test"
        )
    classes = sorted({r["label"].strip() for r in rows if r["label"].strip()})
    _check_classes(classes, manifest)
    index = {name: i for i, name in enumerate(classes)}
    skipped: list[SkippedFile] = []
    samples: dict[str, list[Sample]] = {}
    for row in rows:
        path = Path(row["path"].strip())
        path = path if path.is_absolute() else base / path
        reason = "missing file" if not path.is_file() else _skip_reason(path, base)
        if reason or not row["label"].strip():
            skipped.append(SkippedFile(path, reason or "no label"))
            continue
        split_name = row["split"].strip() if with_split else "all"
        samples.setdefault(split_name, []).append(Sample(path, index[row["label"].strip()]))
    if with_split and "train" not in samples:
        raise DataError(f"data.manifest {manifest}: no row is in the train split")
    for split_name, found in samples.items():
        missing = sorted(set(range(len(classes))) - {s.label for s in found})
        if missing:
            where = f" in the {split_name} split" if with_split else ""
            names = ", ".join(repr(classes[i]) for i in missing)
            raise DataError(f"class(es) {names} have no usable image{where} in {manifest}")
        found.sort(key=lambda s: (s.label, str(s.path)))
    return Discovered(base, classes, samples, skipped)
