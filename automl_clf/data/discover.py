"""Find the images of a data set and their labels.

Two folder layouts: `<root>/<class>/*` (autoclf splits it; see data/split.py) and
`<root>/{train,val,test}/<class>/*` (used as given); or a CSV manifest with columns
`path,label[,split]` (paths relative to the CSV's folder). Hidden files and folders, files that
are not images by their extension, empty files and anything that is not a regular file (a FIFO
would block the reader forever) are skipped and counted, never fatal, and never opened; so is an
image directly in the root or a split folder (in no class folder, it has no label).

Symlinks in a folder tree are not followed out of the root: a file that leaves it is skipped
and counted, and a class or split folder that leaves it is an error (silently dropping a whole
class would change the task); symlinked folders below a class folder are never entered (they
may loop) and are counted. A manifest lists its files one by one, so whatever it names is used,
inside its folder or not, by path or by symlink alike. Problems that make the data set unusable
(a missing folder, an empty class, fewer than two classes, a contradictory manifest) are
`DataError`s raised before any training.
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
LOOSE_IMAGE = "image outside any class folder (no label): move it into one"


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
    real_root = root.resolve()
    skipped: list[SkippedFile] = []
    subfolders = _subfolders(root, real_root, skipped)
    split_folders = [name for name in subfolders if name in SPLIT_NAMES]
    if "train" in split_folders:
        others = sorted(set(subfolders) - set(SPLIT_NAMES))
        if others:
            raise DataError(
                f"data.root {root} mixes split folders ({', '.join(split_folders)}) with other "
                f"folders ({', '.join(others)}): use either <root>/<class>/ or "
                "<root>/{train,val,test}/<class>/"
            )
        classes = _subfolders(root / "train", real_root, skipped)
        _check_classes(classes, root / "train")
        _skip_loose_images(root, skipped)
        samples = {}
        for split in split_folders:
            _skip_loose_images(root / split, skipped)
            found = classes if split == "train" else _subfolders(root / split, real_root, skipped)
            extra = sorted(set(found) - set(classes))
            if extra:
                raise DataError(
                    f"{root / split} has class folder(s) {', '.join(extra)} that train/ lacks; "
                    f"every split must use the classes of train/: {', '.join(classes)}"
                )
            samples[split] = _collect(root / split, classes, real_root, skipped, split)
        return Discovered(root, classes, samples, skipped)
    _check_classes(subfolders, root)
    _skip_loose_images(root, skipped)
    samples = {"all": _collect(root, subfolders, real_root, skipped, "")}
    return Discovered(root, subfolders, samples, skipped)


def _subfolders(folder: Path, real_root: Path, skipped: list[SkippedFile]) -> list[str]:
    """The names of the class (or split) folders in `folder`, sorted; hidden ones are skipped
    and counted, and one that is a symlink leaving the root is an error."""
    names = []
    for path in sorted(p for p in folder.iterdir() if p.is_dir()):
        if path.name.startswith("."):
            skipped.append(SkippedFile(path, "hidden folder (not searched)"))
        elif path.is_symlink() and not path.resolve().is_relative_to(real_root):
            raise DataError(
                f"{path} is a symlink that leaves the data root (to {path.resolve()}); autoclf "
                "does not follow links out of data.root: move or copy the folder into "
                f"{folder}, or point data.root at a folder that holds all the data"
            )
        else:
            names.append(path.name)
    return names


def _skip_loose_images(folder: Path, skipped: list[SkippedFile]) -> None:
    """List in `skipped` the image files directly in `folder` (the root, or a split folder):
    they are in no class folder, so they have no label. Other files there (a README, a
    manifest) are not data and not listed."""
    for path in sorted(p for p in folder.iterdir() if is_image_file(p) and not p.is_dir()):
        skipped.append(SkippedFile(path, LOOSE_IMAGE))


def _check_classes(classes: list[str], folder: Path) -> None:
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "none"
        raise DataError(
            f"{folder} needs at least 2 class folders (<root>/<class>/<image>), found {found}"
        )


def _collect(
    folder: Path,
    classes: list[str],
    real_root: Path,
    skipped: list[SkippedFile],
    split: str,
) -> list[Sample]:
    """Every usable image of each class folder under `folder`, in sorted path order."""
    samples: list[Sample] = []
    for label, name in enumerate(classes):
        class_dir = folder / name
        found = []
        if class_dir.is_dir():
            for path in _walk(class_dir, skipped):
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


def _walk(folder: Path, skipped: list[SkippedFile]) -> list[Path]:
    """Files below `folder`, sorted; hidden and symlinked folders are counted in `skipped`, not
    entered (a symlinked one may loop)."""
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        entered = []
        for name in sorted(dirnames):
            if name.startswith("."):
                skipped.append(SkippedFile(here / name, "hidden folder (not searched)"))
            elif (here / name).is_symlink():
                skipped.append(SkippedFile(here / name, "symlinked folder (not entered)"))
            else:
                entered.append(name)
        dirnames[:] = entered
        files.extend(here / f for f in filenames)
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


def _skip_reason(path: Path, real_root: Path | None) -> str:
    """Why `path` is not a usable image file, or "" if it is one; never opens it.

    `real_root`: symlinks whose target leaves it are skipped (None: follow them anywhere).
    """
    if path.name.startswith("."):
        return "hidden file"
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return f"not an image file ({path.suffix or 'no extension'})"
    if (
        real_root is not None
        and path.is_symlink()
        and not path.resolve().is_relative_to(real_root)
    ):
        return "symlink that leaves the data root"
    try:
        status = path.stat()
    except FileNotFoundError:
        return "missing file"
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


@dataclass(frozen=True)
class _Row:
    """One manifest row, its fields stripped of surrounding whitespace."""

    line: int  # in the CSV file (the header is line 1)
    path: Path  # absolute: relative paths are joined to the CSV's folder
    label: str
    split: str

    def describe(self) -> str:
        label = f"label {self.label}" if self.label else "no label"
        return f"{label}, split {self.split}" if self.split else label


def discover_manifest(manifest: Path) -> Discovered:
    """Samples listed in a CSV manifest: `path,label[,split]`, with a header row.

    Paths are relative to the CSV's folder (or absolute), and are used wherever they lead
    (the manifest names each file on purpose). Rows naming a missing, hidden, non-image or
    non-regular file, or giving no label, are skipped and counted like files in a folder tree.
    `split` (train, val or test) must be given for every row or for none. A file listed twice
    is an error naming both rows: with two labels or splits it cannot be both, and even with
    the same ones it would silently weigh double.
    """
    base = manifest.resolve().parent
    rows = _read_manifest(manifest, base)
    labelled = [r for r in rows if r.label]  # the others are skipped: their split is moot
    with_split = [r for r in labelled if r.split]
    if with_split and len(with_split) != len(labelled):
        raise DataError(
            f"data.manifest {manifest}: {len(with_split)} of {len(labelled)} labelled rows give "
            "a split; give one for every row (train, val or test) or for none"
        )
    bad = sorted({r.split for r in with_split} - set(SPLIT_NAMES))
    if bad:
        raise DataError(
            f"data.manifest {manifest}: unknown split(s) {', '.join(bad)}; use train, val or test"
        )
    _check_listed_once(rows, manifest)
    classes = sorted({r.label for r in rows if r.label})
    _check_classes(classes, manifest)
    index = {name: i for i, name in enumerate(classes)}
    skipped: list[SkippedFile] = []
    samples: dict[str, list[Sample]] = {}
    for row in rows:
        reason = _skip_reason(row.path, None) or ("" if row.label else "no label")
        if reason:
            skipped.append(SkippedFile(row.path, reason))
            continue
        samples.setdefault(row.split or "all", []).append(Sample(row.path, index[row.label]))
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


def _read_manifest(manifest: Path, base: Path) -> list[_Row]:
    """The rows of the CSV. A UTF-8 byte-order mark (Excel's "CSV UTF-8") is not part of the
    first column's name, and the fields a short row lacks are empty."""
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, restval="")
            raw = [(reader.line_num, row) for row in reader]
            columns = [name.strip() for name in reader.fieldnames or ()]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"data.manifest: cannot read {manifest}: {exc}") from None
    if not {"path", "label"} <= set(columns):
        raise DataError(
            f"data.manifest {manifest} needs a header with columns path,label[,split]; "
            f"found {', '.join(sorted(columns)) or 'an empty file'}"
        )
    rows = []
    for line, fields in raw:
        values = {k.strip(): v.strip() for k, v in fields.items() if isinstance(k, str) and v}
        path = Path(values.get("path", ""))
        path = path if path.is_absolute() else base / path
        rows.append(_Row(line, path, values.get("label", ""), values.get("split", "")))
    return rows


def _check_listed_once(rows: list[_Row], manifest: Path) -> None:
    first: dict[str, _Row] = {}
    for row in rows:
        key = os.path.normpath(row.path)
        if key in first:
            earlier = first[key]
            raise DataError(
                f"data.manifest {manifest} lists {key} twice, at lines {earlier.line} "
                f"({earlier.describe()}) and {row.line} ({row.describe()}); list each file "
                "once, with its one label"
            )
        first[key] = row
