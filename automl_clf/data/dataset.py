"""A data set ready for trials: discovered, hashed, split, de-duplicated (byte-identical files
here, near-duplicates in data/near_duplicates.py), and decoded once.

Decoding and resizing happen once per file content and decoding (size, channels, resize policy):
in this process (kept in memory for every trial) and across runs and workers (the on-disk stores
of data/stores.py). Normalisation and augmentation are cheap and happen per batch. A corrupt or
truncated file is skipped and listed, never fatal. A data set whose decoded pixels would not fit
comfortably in memory is streamed from the on-disk store instead (`data.loading`): memory-mapped
while the page cache can hold it, else losslessly compressed (data/stores.py `ShardStore`, about
half the bytes) and decoded again by the DataLoader workers; the same pixels bit for bit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from automl_clf.data.cache import HashIndex, cache_writes, decode_files
from automl_clf.data.discover import (
    Discovered,
    Sample,
    SkippedFile,
    class_counts,
    discover,
    discover_manifest,
)
from automl_clf.data.near_duplicates import NearDuplicateReport, check_near_duplicates
from automl_clf.data.preprocess import Decoding
from automl_clf.data.split import Splits, split
from automl_clf.data.stores import DecodedStore, LazyRows, ShardRows, ShardStore
from automl_clf.errors import DataError
from automl_clf.machine import usable_cpus, usable_memory
from automl_clf.spec.data import DataSpec

# `loading: auto` keeps decoded pixels in RAM below this share of the memory this process may
# use (the host's RAM, or a container's cgroup limit when that is lower: machine.py)
MEMORY_SHARE = 0.25
# A streamed data set is memory-mapped raw below this share of memory (the page cache holds it),
# and stored as lossless WebP shards above it (half the bytes to store and read, 0.3 ms of CPU an
# image at 128 px to decode: bench/data_scale.py)
RAW_SHARE = 1.0
IMBALANCE_RATIO = 3.0  # largest / smallest class in train above this: warn
CHECK_CHUNK = 1024  # images decoded at once by `check_decoding`, then dropped


Pixels = np.ndarray | LazyRows | ShardRows


STATS_SAMPLE = 4096  # images a streamed split's mean/std is estimated from


def pixels_for_stats(pixels: Pixels) -> np.ndarray:
    """All pixels when in memory; an evenly spaced sample of a streamed split."""
    if isinstance(pixels, np.ndarray):
        return pixels
    index = np.unique(np.linspace(0, len(pixels) - 1, min(len(pixels), STATS_SAMPLE)).astype(int))
    return pixels[index]


@dataclass(frozen=True)
class SplitArrays:
    """One split's decoded pixels, labels and source files, in the same order."""

    pixels: Pixels  # uint8 (N, H, W, C), in memory or streamed from disk
    labels: np.ndarray  # int64 (N,)
    paths: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def streamed(self) -> bool:
        return isinstance(self.pixels, LazyRows | ShardRows)

    def take(self, index: np.ndarray) -> SplitArrays:
        """The images at `index` (integers), in that order: a cross-validation fold of a split
        (final/audit.py). A streamed split stays streamed: no pixel is read here."""
        index = np.asarray(index, dtype=np.int64)
        pixels = self.pixels
        taken: Pixels = pixels[index] if isinstance(pixels, np.ndarray) else pixels.take(index)
        return SplitArrays(taken, self.labels[index], tuple(self.paths[i] for i in index))

    @staticmethod
    def concat(*parts: SplitArrays) -> SplitArrays:
        if len(parts) == 1:
            return parts[0]
        labels = np.concatenate([p.labels for p in parts])
        paths = tuple(path for p in parts for path in p.paths)
        shards = [p.pixels for p in parts if isinstance(p.pixels, ShardRows)]
        if shards:
            assert len(shards) == len(parts)
            return SplitArrays(ShardRows.concat(shards), labels, paths)
        lazy = [p.pixels for p in parts if isinstance(p.pixels, LazyRows)]
        if lazy:
            assert len(lazy) == len(parts) and len({r.path for r in lazy}) == 1
            rows = np.concatenate([r.rows for r in lazy])
            return SplitArrays(LazyRows(lazy[0].path, rows), labels, paths)
        return SplitArrays(np.concatenate([np.asarray(p.pixels) for p in parts]), labels, paths)


@dataclass(frozen=True)
class DuplicateGroup:
    """Files with identical content in more than one split."""

    digest: str
    paths: dict[str, list[Path]]  # split -> files


@dataclass
class Dataset:
    """Discovered classes, the fixed split, and decoded pixels cached per decoding."""

    spec: DataSpec
    root: Path
    classes: list[str]
    splits: Splits
    fingerprint: str  # sha256: which file (name and content) is in which split, with which label
    skipped: list[SkippedFile]
    presplit: bool  # the folders (or the manifest) gave the split
    duplicates: list[DuplicateGroup]  # across splits, before any were dropped
    n_dropped: int  # val/test images dropped as duplicates of earlier splits
    hashes: dict[Path, str]
    near_duplicates: NearDuplicateReport | None = None  # None: data.near_duplicates: off
    # the split and its fingerprint before `group` moved near-duplicates; None: nothing moved
    ungrouped: tuple[Splits, str] | None = None
    _decoded: dict[Decoding, dict[str, SplitArrays]] = field(default_factory=dict)
    _checked: set[Decoding] = field(default_factory=set)
    _usable: dict[str, list[Sample]] | None = None  # each split's samples that decoded

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def counts(self) -> dict[str, list[int]]:
        """Images per class in each split: once decoded (`arrays`, `check_decoding`), those
        that decoded, so a file listed in `skipped` is not counted too; before, every file."""
        splits = self._usable if self._usable is not None else self.splits.by_name()
        return {n: class_counts(s, self.n_classes) for n, s in splits.items()}

    def warnings(self) -> list[str]:
        """Problems worth a user's attention that do not stop training (imbalance, leakage)."""
        notes = []
        train = self.counts()["train"]
        if min(train) * IMBALANCE_RATIO < max(train):
            big, small = int(np.argmax(train)), int(np.argmin(train))
            notes.append(
                f"imbalanced classes: {self.classes[big]!r} has {train[big]} training images, "
                f"{self.classes[small]!r} {train[small]}; consider train.class_weighting: "
                "balanced, train.sampling: oversample and study.objective: macro_f1"
            )
        if self.duplicates:
            action = (
                f"dropped {self.n_dropped} from val/test"
                if self.spec.duplicates == "drop"
                else "kept (data.duplicates: keep): scores may be inflated"
            )
            n = len(self.duplicates)
            notes.append(f"{n} image(s) appear in more than one split; {action}")
        if self.near_duplicates is not None and self.near_duplicates.summary():
            notes.append(self.near_duplicates.summary())
        return notes

    def keep_split(self, fingerprint: str) -> bool:
        """Go back to the split before near-duplicates were grouped when that is the split
        `fingerprint` names, and say whether it did. A study made before grouping existed (or
        before its data gained a straddling cluster) then resumes on the split it was made
        with, its leak reported as under `warn`, instead of refusing other data."""
        if self.ungrouped is None or fingerprint != self.ungrouped[1]:
            return False
        self.splits, self.fingerprint = self.ungrouped
        self.ungrouped = None
        self._decoded.clear()
        self._checked.clear()
        self._usable = None
        if self.near_duplicates is not None:
            self.near_duplicates = replace(self.near_duplicates, kept_study_split=True, n_moved=0)
        return True

    def decoded_bytes(self, decoding: Decoding) -> int:
        """What every split's decoded pixels take as uint8."""
        n = sum(len(s) for s in self.splits.by_name().values())
        return n * decoding.image_size**2 * decoding.channels

    def loading_mode(self, decoding: Decoding) -> str:
        """memory or stream, as `data.loading` says or (auto) by the decoded size."""
        if self.spec.loading != "auto":
            return self.spec.loading
        fits = self.decoded_bytes(decoding) < MEMORY_SHARE * usable_memory()
        return "memory" if fits or not self.spec.cache else "stream"

    def storage(self, decoding: Decoding) -> str:
        """How the decoded pixels are kept on disk: `raw` uint8 (loaded whole, or memory-mapped
        while the page cache can hold them) or, for a streamed set larger than that, `shards`."""
        if self.loading_mode(decoding) == "memory":
            return "raw"
        small = self.decoded_bytes(decoding) < RAW_SHARE * usable_memory()
        return "raw" if small else "shards"

    def arrays(self, decoding: Decoding) -> dict[str, SplitArrays]:
        """Every split decoded with `decoding`; computed once per process and decoding."""
        if decoding not in self._decoded:
            self._decoded[decoding] = self._decode_all(decoding)
        return self._decoded[decoding]

    def check_decoding(self, decoding: Decoding) -> None:
        """Decode every image once, keeping no pixels and writing nothing, to list the
        unreadable ones in `skipped` and refuse a split they would leave without a class: what
        `autoclf validate` does before any cache exists, so checking a spec creates no folder
        (and a data set larger than memory can be checked)."""
        if decoding in self._decoded or decoding in self._checked:
            return
        paths = {
            self.hashes[s.path]: s.path for part in self.splits.by_name().values() for s in part
        }
        digests = list(paths)
        failed: dict[str, str] = {}
        for start in range(0, len(digests), CHECK_CHUNK):
            chunk = digests[start : start + CHECK_CHUNK]
            results = decode_files(decoding, [paths[d] for d in chunk], usable_cpus())
            for digest, (pixels, error) in zip(chunk, results, strict=True):
                if pixels is None:
                    failed[digest] = error or "cannot decode"
        self._decodable(failed)
        self._checked.add(decoding)

    def _decode_all(self, decoding: Decoding) -> dict[str, SplitArrays]:
        cache_dir = self.spec.cache_dir if self.spec.cache else None
        stream = self.loading_mode(decoding) == "stream"
        store: DecodedStore | ShardStore
        samples = self.splits.by_name()
        with cache_writes(cache_dir):
            if self.storage(decoding) == "shards":
                assert cache_dir is not None  # the spec refuses stream without cache
                store = ShardStore(cache_dir, decoding)
            else:
                store = DecodedStore(cache_dir, decoding)
            store.ensure(
                ((self.hashes[s.path], s.path) for part in samples.values() for s in part),
                n_threads=usable_cpus(),
            )
        arrays = {}
        for name, kept in self._decodable(store.failed).items():
            digests = [self.hashes[s.path] for s in kept]
            if isinstance(store, ShardStore):
                pixels: Pixels = store.take(digests)
            else:
                pixels = store.take(digests, mapped=stream)
            labels = np.asarray([s.label for s in kept], dtype=np.int64)
            arrays[name] = SplitArrays(pixels, labels, tuple(s.path for s in kept))
        return arrays

    def _decodable(self, failed: dict[str, str]) -> dict[str, list[Sample]]:
        """Each split's samples whose content decoded; the others (`failed`: hash -> reason)
        join `skipped`. Raises DataError if that leaves a split without a class."""
        kept_by_split = {}
        for name, part in self.splits.by_name().items():
            kept = []
            for sample in part:
                digest = self.hashes[sample.path]
                if digest in failed:
                    self.skipped.append(SkippedFile(sample.path, failed[digest]))
                else:
                    kept.append(sample)
            self._check_every_class(name, kept)
            kept_by_split[name] = kept
        self._usable = kept_by_split
        return kept_by_split

    def _check_every_class(self, name: str, kept: list[Sample]) -> None:
        missing = sorted(set(range(self.n_classes)) - {s.label for s in kept})
        if missing:
            names = ", ".join(self.classes[i] for i in missing)
            raise DataError(
                f"after skipping unreadable files, the {name} split holds no image of class(es) "
                f"{names}; see the skipped files listed by `autoclf validate`"
            )


def load_dataset(spec: DataSpec) -> Dataset:
    """Discover, hash and split the spec's data (no decoding yet: that is `Dataset.arrays`)."""
    discovered = discover_manifest(spec.manifest) if spec.manifest else discover(_root(spec))
    all_samples = [s for part in discovered.samples.values() for s in part]
    index = HashIndex(spec.cache_dir if spec.cache else None)
    try:
        digests = index.hashes([s.path for s in all_samples])
    except OSError as exc:
        raise DataError(f"cannot read {exc.filename}: {exc.strerror}") from None
    hashes = dict(zip((s.path for s in all_samples), digests, strict=True))
    splits = split(discovered, spec.split)
    duplicates = find_duplicates(splits, hashes)
    n_dropped = 0
    if spec.duplicates == "drop" and duplicates:
        splits, n_dropped = _drop_leaked(splits, hashes, discovered)
    cache_dir = spec.cache_dir if spec.cache else None
    plain = splits
    splits, near = check_near_duplicates(
        spec.near_duplicates, discovered, splits, hashes, cache_dir, usable_cpus()
    )
    moved = near is not None and near.n_moved > 0
    return Dataset(
        spec=spec,
        root=discovered.root,
        classes=discovered.classes,
        splits=splits,
        fingerprint=fingerprint(splits, discovered, hashes),
        skipped=list(discovered.skipped),
        presplit=discovered.presplit,
        duplicates=duplicates,
        n_dropped=n_dropped,
        hashes=hashes,
        near_duplicates=near,
        ungrouped=(plain, fingerprint(plain, discovered, hashes)) if moved else None,
    )


def check_dataset(spec: DataSpec, decoding: Decoding) -> Dataset:
    """`autoclf validate`'s data check: discover, hash, split and decode every image once.

    With an existing cache folder it is used and filled as a search would (the search then
    decodes nothing again); without one nothing is written, so validating a spec leaves no
    `studies/` folder behind: the images are decoded in chunks and dropped.

    Raises:
        DataError: as `load_dataset` and `Dataset.arrays` raise it.
    """
    cached = spec.cache and spec.cache_dir is not None and spec.cache_dir.is_dir()
    if not cached:
        spec = spec.model_copy(update={"cache": False})  # no hashes.json either
    dataset = load_dataset(spec)
    if cached:
        dataset.arrays(decoding)
    else:
        dataset.check_decoding(decoding)
    return dataset


def _root(spec: DataSpec) -> Path:
    assert spec.root is not None
    return spec.root


def find_duplicates(splits: Splits, hashes: dict[Path, str]) -> list[DuplicateGroup]:
    """Contents that occur in more than one split (exact byte-level duplicates)."""
    where: dict[str, dict[str, list[Path]]] = {}
    for name, samples in splits.by_name().items():
        for s in samples:
            where.setdefault(hashes[s.path], {}).setdefault(name, []).append(s.path)
    return [DuplicateGroup(d, paths) for d, paths in where.items() if len(paths) > 1]


def _drop_leaked(
    splits: Splits, hashes: dict[Path, str], discovered: Discovered
) -> tuple[Splits, int]:
    """Drop from val what train holds, and from test what train or val holds."""
    seen = {hashes[s.path] for s in splits.train}
    val = [s for s in splits.val if hashes[s.path] not in seen]
    seen |= {hashes[s.path] for s in val}
    test = [s for s in splits.test if hashes[s.path] not in seen]
    for name, kept in (("val", val), ("test", test)):
        missing = set(range(len(discovered.classes))) - {s.label for s in kept}
        if missing:
            names = ", ".join(discovered.classes[i] for i in sorted(missing))
            raise DataError(
                f"dropping duplicates of training images leaves the {name} split without "
                f"class(es) {names}; remove the duplicates or set data.duplicates: keep"
            )
    n_dropped = len(splits.val) - len(val) + len(splits.test) - len(test)
    return Splits(splits.train, val, test), n_dropped


def fingerprint(splits: Splits, discovered: Discovered, hashes: dict[Path, str]) -> str:
    """A hash of which file (name and content) is in which split with which label."""
    digest = hashlib.sha256()
    for name, samples in splits.by_name().items():
        for s in samples:
            inside = s.path.is_relative_to(discovered.root)
            rel = (s.path.relative_to(discovered.root) if inside else s.path).as_posix()
            label = discovered.classes[s.label]
            digest.update(f"{name}\t{label}\t{rel}\t{hashes[s.path]}\n".encode())
    return digest.hexdigest()
