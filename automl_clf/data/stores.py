"""On-disk stores of decoded pixels, keyed by content hash and decoding (data/cache.py has the
hashes, the folder layout and the codec they share).

Two stores hold the same pixels, the output of `Decoding.load_file`, bit for bit:

- `DecodedStore`: one uint8 array, 49 KB an image at 128 px RGB, 150 KB at 224 px; loaded
  whole (`data.loading: memory`) or, for a streamed data set smaller than the machine's memory,
  memory-mapped (`LazyRows`): the page cache holds it, and a read costs next to nothing.
- `ShardStore`, for a streamed data set larger than memory: each image losslessly compressed
  (WebP lossless, exact by definition of the format) in shard files, decoded again by the
  DataLoader workers (`ShardRows`). About half the bytes to store and to read from disk on
  photographs, for 0.3 ms of CPU an image at 128 px, against 1.2 ms to decode an original of a
  few hundred pixels every epoch (and far more for a camera's): bench/data_scale.py. Lossy
  formats would be 3 times smaller still, but training would then see other pixels than
  `predict`, which decodes the file itself.

Every data file is written under a new name before index.json (written to a temporary file,
then renamed) names it, and the index names only bytes already written, so a reader always sees
a consistent store, and a killed process or several workers writing at once never leave a torn
one; the worst case is a decode done twice. A shard store names its progress at least every
`INDEX_EVERY_S` while it is built (and when interrupted), so a long first scan that is stopped
resumes where it was.

Data files are large, so none may be left behind, and none in use may go. A writer holds an
exclusive `flock` on its file from creating it until index.json names it; every process that
wrote or read a file then holds a shared one until it exits (streamed splits reopen the files in
DataLoader workers). A file the index does not name and nobody holds a lock on is provably
stale, whoever made it: its writer was killed mid-write, or a newer store replaced it and its
last reader is gone. Opening a store, and writing one, removes those (`_sweep`). The kernel drops
a dead process's locks, so a crash leaves nothing that looks in use. Without `fcntl` (not POSIX),
nothing is locked and nothing swept.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import features

from automl_clf.data.cache import (
    atomic_write_bytes,
    decode_files,
    decode_pixels,
    decoding_key,
    encode_files,
    read_json,
)
from automl_clf.data.preprocess import Decoding
from automl_clf.errors import DataError

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None  # type: ignore[assignment]

PIXELS_GLOB = "pixels-*.npy"
SHARD_GLOB = "shard-*.webps"
SHARD_BYTES = 1 << 30  # a shard is closed at about this size and the next one begun
ENCODE_CHUNK = 512  # images decoded and compressed per round: bounds a build's memory
INDEX_EVERY_S = 30.0  # a shard store being built names its progress at least this often
_IN_USE: dict[Path, int] = {}  # pixels files this process wrote or read -> fd holding its lock


class _Store:
    """What both stores share: the decoding, and which contents they still lack."""

    decoding: Decoding
    rows: Mapping[str, Any]  # content hash -> where its pixels are
    failed: dict[str, str]  # content hash -> why it cannot be decoded

    @property
    def shape(self) -> tuple[int, int, int]:
        d = self.decoding
        return (d.image_size, d.image_size, d.channels)

    def _missing(self, items: Iterable[tuple[str, Path]]) -> dict[str, Path]:
        """The first path of every content neither stored nor known to fail."""
        missing: dict[str, Path] = {}
        for digest, path in items:
            if digest not in self.rows and digest not in self.failed:
                missing.setdefault(digest, path)
        return missing


class DecodedStore(_Store):
    """Decoded pixels of every distinct file content for one decoding, on disk.

    Args:
        cache_dir: the cache folder, or None for an in-memory store (nothing written).
    """

    def __init__(self, cache_dir: Path | None, decoding: Decoding) -> None:
        self.decoding = decoding
        self.folder = cache_dir / "decoded" / decoding_key(decoding) if cache_dir else None
        self.pixels: np.ndarray = np.zeros((0, *self.shape), np.uint8)
        self.rows: dict[str, int] = {}
        self.failed: dict[str, str] = {}
        self.path: Path | None = None  # the pixels file, once there is one on disk
        if self.folder is not None:
            self._load()

    def _load(self) -> None:
        assert self.folder is not None
        if self.folder.is_dir():
            _sweep(self.folder, PIXELS_GLOB, _named_pixels)
        index = read_json(self.folder / "index.json", {})
        try:
            path = self.folder / index["pixels"]
            _hold(path)
            pixels = np.load(path, mmap_mode="r")
            usable = pixels.shape[1:] == self.shape and pixels.shape[0] >= len(index["rows"])
        except (KeyError, TypeError, OSError, ValueError):
            usable = False  # no store yet, or a damaged one: start afresh
        if not usable:
            if isinstance(index, dict) and isinstance(index.get("pixels"), str):
                _release(self.folder / index["pixels"])
            return
        self.pixels, self.path = pixels, path
        self.rows = {h: i for i, h in enumerate(index["rows"])}
        self.failed = dict(index.get("failed", {}))

    def ensure(
        self,
        items: Iterable[tuple[str, Path]],
        n_threads: int = 4,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        """Decode every (hash, path) not stored yet, and store the pixels (or the failure).

        On disk, a new pixels file holds the old rows and the new ones, decoded and written in
        rounds of `ENCODE_CHUNK` images, so memory stays bounded however many there are."""
        missing = self._missing(items)
        if not missing:
            return
        if self.folder is None:
            results = decode_files(self.decoding, list(missing.values()), n_threads)
            new_rows = []
            for digest, (pixels, error) in zip(missing, results, strict=True):
                if pixels is None:
                    self.failed[digest] = error or "cannot decode"
                else:
                    self.rows[digest] = len(self.rows)
                    new_rows.append(pixels)
            if new_rows:
                self.pixels = np.concatenate([self.pixels, np.stack(new_rows)])
            if on_progress is not None:
                on_progress(len(missing))
            return
        self._append(missing, n_threads, on_progress)

    def take(self, digests: Sequence[str], mapped: bool = False) -> np.ndarray | LazyRows:
        """The pixels of these contents, in this order: in memory, or `mapped` from the file."""
        rows = np.asarray([self.rows[d] for d in digests], dtype=np.int64)
        if not mapped:
            return np.asarray(self.pixels[rows])
        assert self.path is not None
        return LazyRows(self.path, rows)

    def _append(
        self,
        missing: dict[str, Path],
        n_threads: int,
        on_progress: Callable[[int], None] | None,
    ) -> None:
        assert self.folder is not None
        n_old = len(self.rows)
        rows, failed = dict(self.rows), dict(self.failed)
        self.folder.mkdir(parents=True, exist_ok=True)
        path, fd = _create_locked(self.folder, "pixels-", ".npy")
        try:
            # A row for every missing file; those that fail to decode leave theirs unused.
            out = np.lib.format.open_memmap(
                path, mode="w+", dtype=np.uint8, shape=(n_old + len(missing), *self.shape)
            )
            for start in range(0, n_old, ENCODE_CHUNK):
                stop = min(n_old, start + ENCODE_CHUNK)
                out[start:stop] = self.pixels[start:stop]
            todo = list(missing.items())
            for start in range(0, len(todo), ENCODE_CHUNK):
                part = todo[start : start + ENCODE_CHUNK]
                results = decode_files(self.decoding, [p for _, p in part], n_threads)
                for (digest, _), (pixels, error) in zip(part, results, strict=True):
                    if pixels is None:
                        failed[digest] = error or "cannot decode"
                    else:
                        out[len(rows)] = pixels
                        rows[digest] = len(rows)
                if on_progress is not None:
                    on_progress(len(part))
            out.flush()
            del out
            order = sorted(rows, key=rows.__getitem__)
            index = {"pixels": path.name, "rows": order, "failed": failed}
            atomic_write_bytes(self.folder / "index.json", json.dumps(index).encode())
        except BaseException:
            path.unlink(missing_ok=True)
            os.close(fd)
            raise
        self.rows, self.failed = rows, failed
        _hold(path, fd)  # written: from now on this process is one of its readers
        previous, self.path = self.path, path
        self.pixels = np.load(path, mmap_mode="r")
        if previous is not None and previous != path:
            _release(previous)  # the sweep removes it unless another process still reads it
        _sweep(self.folder, PIXELS_GLOB, _named_pixels)


class LazyRows:
    """Rows of a raw pixels store, memory-mapped: the `pixels` of a split streamed from it.

    Indexes like an array (`rows[3]`, `rows[2:9]`, `rows[index_array]`) and pickles as its path
    and row numbers, so DataLoader workers (spawned) open their own memory map.
    """

    def __init__(self, path: Path, rows: np.ndarray) -> None:
        self.path = path
        self.rows = rows
        self._map: np.ndarray | None = None

    def _pixels(self) -> np.ndarray:
        if self._map is None:
            self._map = np.load(self.path, mmap_mode="r")
        return self._map

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self._pixels().shape[1:])

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(self._pixels()[self.rows[index]])

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "rows": self.rows, "_map": None}

    def take(self, index: np.ndarray) -> LazyRows:
        """The rows at `index` (integers), in that order, still unread."""
        return LazyRows(self.path, self.rows[index])


class ShardStore(_Store):
    """Decoded pixels of every distinct file content for one decoding, compressed losslessly in
    shard files: the store of a streamed data set (see the module docstring).

    Args:
        cache_dir: the cache folder (a streamed data set needs one).
    """

    def __init__(self, cache_dir: Path, decoding: Decoding) -> None:
        if not features.check("webp"):
            raise DataError(
                "a streamed data set (data.loading: stream, or auto for one larger than a "
                "quarter of memory) is cached as lossless WebP, and this Pillow was built "
                "without WebP support; install Pillow's own wheel (pip install --force-reinstall "
                "pillow), or set data.loading: memory"
            )
        self.decoding = decoding
        self.folder = cache_dir / "encoded" / decoding_key(decoding)
        self.shards: dict[str, dict[str, list[Any]]] = {}  # file -> {"hashes", "ends"}: named
        self.rows: dict[str, tuple[str, int, int]] = {}  # hash -> (file, offset, length)
        self.failed: dict[str, str] = {}
        self._current: tuple[Path, int] | None = None  # the shard being written, and its fd
        self._named = False  # whether the index names the shard being written
        self._size = 0  # bytes written to it
        self._published = 0.0  # time.monotonic() of the last index written
        if self.folder.is_dir():
            _sweep(self.folder, SHARD_GLOB, _named_shards)
        self._adopt(read_json(self.folder / "index.json", {}))

    def _adopt(self, index: Any) -> None:
        """Take in the shards `index` names that this store does not hold yet, and its failures:
        at opening, and before writing the index (another process may have named shards)."""
        if not isinstance(index, dict):
            return
        failed = index.get("failed")
        if isinstance(failed, dict):
            for digest, reason in failed.items():
                self.failed.setdefault(str(digest), str(reason))
        shards = index.get("shards")
        for name, entry in shards.items() if isinstance(shards, dict) else ():
            path = self.folder / name
            if name in self.shards or path.name != name:
                continue
            held = path in _IN_USE  # e.g. by another store of this process: leave it held
            try:
                hashes = [str(h) for h in entry["hashes"]]
                ends = [int(e) for e in entry["ends"]]
                _hold(path)
                torn = len(hashes) != len(ends) or (bool(ends) and ends[-1] > path.stat().st_size)
            except (KeyError, TypeError, ValueError, OSError):
                torn = True  # removed since the index was read, or damaged
            if torn:
                if not held:
                    _release(path)
                continue  # its images are decoded again
            self.shards[name] = {"hashes": hashes, "ends": ends}
            start = 0
            for digest, end in zip(hashes, ends, strict=True):
                self.rows.setdefault(digest, (name, start, end - start))
                start = end

    def ensure(
        self,
        items: Iterable[tuple[str, Path]],
        n_threads: int = 4,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        """Decode and compress every (hash, path) not stored yet, in rounds of `ENCODE_CHUNK`
        images (memory stays bounded whatever the data set's size), and store the result."""
        missing = self._missing(items)
        if not missing:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        todo = list(missing.items())
        try:
            for start in range(0, len(todo), ENCODE_CHUNK):
                part = todo[start : start + ENCODE_CHUNK]
                results = encode_files(self.decoding, [path for _, path in part], n_threads)
                for (digest, _), (data, error) in zip(part, results, strict=True):
                    if data is None:
                        self.failed[digest] = error or "cannot decode"
                    else:
                        self._write(digest, data)
                if time.monotonic() - self._published > INDEX_EVERY_S:
                    self._publish()
                if on_progress is not None:
                    on_progress(len(part))
            self._publish()
        finally:
            self._finish_shard()  # on an interrupt: what was written is named, if it can be
        _sweep(self.folder, SHARD_GLOB, _named_shards)

    def _write(self, digest: str, data: bytes) -> None:
        if self._current is not None and self._size >= SHARD_BYTES:
            self._publish()
            self._finish_shard()
        if self._current is None:
            self._current, self._named, self._size = (
                _create_locked(self.folder, "shard-", ".webps"),
                False,
                0,
            )
            self.shards[self._current[0].name] = {"hashes": [], "ends": []}
        path, fd = self._current
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        self.rows[digest] = (path.name, self._size, len(data))
        self._size += len(data)
        entry = self.shards[path.name]
        entry["hashes"].append(digest)
        entry["ends"].append(self._size)

    def _publish(self) -> None:
        """Write index.json naming every image written so far (and the shards other processes
        named meanwhile); from then on the shard being written is read-locked like any other."""
        self._adopt(read_json(self.folder / "index.json", {}))
        index = {"format": 1, "shards": self.shards, "failed": self.failed}
        atomic_write_bytes(self.folder / "index.json", json.dumps(index).encode())
        self._published = time.monotonic()
        if self._current is not None and not self._named:
            path, fd = self._current
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_SH)  # its writer is now one of its readers
                _IN_USE[path] = fd
            self._named = True

    def _finish_shard(self) -> None:
        """Stop writing the current shard: named if it can be, else removed."""
        if self._current is None:
            return
        path, fd = self._current
        if not self._named:
            with contextlib.suppress(OSError):  # e.g. a full disk: unnamed, the shard goes
                self._publish()
        self._current = None
        if not self._named:
            path.unlink(missing_ok=True)
            self.shards.pop(path.name, None)
            self.rows = {d: row for d, row in self.rows.items() if row[0] != path.name}
            os.close(fd)
        elif fcntl is None:
            os.close(fd)  # else its descriptor holds the read lock until this process exits

    def take(self, digests: Sequence[str]) -> ShardRows:
        """The images of these contents, in this order, read from the shards on demand."""
        names = tuple(self.shards)
        number = {name: i for i, name in enumerate(names)}
        located = [self.rows[d] for d in digests]
        return ShardRows(
            self.folder,
            names,
            np.asarray([number[name] for name, _, _ in located], dtype=np.int32),
            np.asarray([offset for _, offset, _ in located], dtype=np.int64),
            np.asarray([length for _, _, length in located], dtype=np.int64),
            self.shape,
        )


class ShardRows:
    """Images of a shard store, decoded on demand: the `pixels` of a streamed split.

    Indexes like an array (`rows[3]` is one (H, W, C) image; `rows[2:9]` and `rows[index_array]`
    a stack) and pickles as its folder and row table, so DataLoader workers (spawned) open their
    own files. The owning process holds the shards' read locks (`ShardStore`).
    """

    def __init__(
        self,
        folder: Path,
        shards: tuple[str, ...],
        shard: np.ndarray,
        offset: np.ndarray,
        length: np.ndarray,
        image_shape: tuple[int, int, int],
    ) -> None:
        self.folder = folder
        self.shards = shards
        self.shard, self.offset, self.length = shard, offset, length
        self.image_shape = image_shape
        self._files: dict[int, BinaryIO] = {}

    def __len__(self) -> int:
        return len(self.shard)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.image_shape)

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, int | np.integer):
            return self._read(range(len(self))[index])
        picked = range(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        out = np.empty((len(picked), *self.image_shape), dtype=np.uint8)
        for k, i in enumerate(picked):
            out[k] = self._read(int(i))
        return out

    def _read(self, i: int) -> np.ndarray:
        s = int(self.shard[i])
        path = self.folder / self.shards[s]
        handle = self._files.get(s)
        if handle is None:
            handle = self._files[s] = path.open("rb")
        handle.seek(int(self.offset[i]))
        data = handle.read(int(self.length[i]))
        try:
            pixels = decode_pixels(data, self.image_shape[2])
            problem = "" if pixels.shape == self.image_shape else f"shape {pixels.shape}"
        except (OSError, ValueError, SyntaxError) as exc:  # Pillow on bad bytes
            problem = str(exc)
        if problem:
            raise DataError(
                f"the streamed image cache is damaged: image {i} in {path} cannot be read "
                f"({problem}); delete {self.folder} and run again"
            )
        return pixels

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_files": {}}

    def take(self, index: np.ndarray) -> ShardRows:
        """The images at `index` (integers), in that order, still undecoded."""
        return ShardRows(
            self.folder,
            self.shards,
            self.shard[index],
            self.offset[index],
            self.length[index],
            self.image_shape,
        )

    @staticmethod
    def concat(parts: Sequence[ShardRows]) -> ShardRows:
        """One view of several splits' rows (of the same store), in order."""
        first = parts[0]
        assert all(p.folder == first.folder and p.shards == first.shards for p in parts)
        return ShardRows(
            first.folder,
            first.shards,
            np.concatenate([p.shard for p in parts]),
            np.concatenate([p.offset for p in parts]),
            np.concatenate([p.length for p in parts]),
            first.image_shape,
        )


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _create_locked(folder: Path, prefix: str, suffix: str) -> tuple[Path, int]:
    """A new, empty data file, exclusively locked: its writer is at work."""
    while True:
        path = folder / f"{prefix}{uuid.uuid4().hex[:12]}{suffix}"
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
        if fcntl is None:
            return path, fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _same_file(fd, path):
            return path, fd
        os.close(fd)  # a sweep removed it between its creation and our lock: take another name


def _hold(path: Path, fd: int | None = None) -> None:
    """Hold a shared lock on `path` until this process exits (or `_release`): it is in use.

    `fd`: the writer's own descriptor, whose exclusive lock becomes the shared one."""
    if fcntl is None or path in _IN_USE:
        if fd is not None:
            os.close(fd)
        return
    if fd is None:
        fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    _IN_USE[path] = fd


def _release(path: Path) -> None:
    fd = _IN_USE.pop(path, None)
    if fd is not None:
        os.close(fd)


def _named_pixels(index: Any) -> set[str]:
    named = index.get("pixels") if isinstance(index, dict) else None
    return {named} if isinstance(named, str) else set()


def _named_shards(index: Any) -> set[str]:
    shards = index.get("shards") if isinstance(index, dict) else None
    return set(shards) if isinstance(shards, dict) else set()


def _sweep(folder: Path, pattern: str, named: Callable[[Any], set[str]]) -> None:
    """Remove the stale data files matching `pattern` in `folder` (see the module docstring);
    `named` reads the file names an index names."""
    if fcntl is None:
        return
    for candidate in folder.glob(pattern):
        if candidate in _IN_USE:
            continue
        try:
            fd = os.open(candidate, os.O_RDONLY)
        except OSError:
            continue  # gone already
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # being written, or read by a live process
            # Read the index under the lock: a writer that finished just now names its file.
            index = read_json(folder / "index.json", {})
            if candidate.name not in named(index) and _same_file(fd, candidate):
                candidate.unlink(missing_ok=True)
        finally:
            os.close(fd)
