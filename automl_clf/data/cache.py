"""Content hashes of image files, and an on-disk store of decoded pixels keyed by them.

Why hand-written: the store must be keyed by file *content* (so a renamed or copied file is not
decoded again, and an edited one is) and by the decoding, shared by every trial, rerun and
worker, and readable as a memory map for data sets larger than memory; no well-kept library does
that for numpy image arrays without a server.

Layout under the cache folder:

    hashes.json                           path -> [size, mtime_ns, content hash]: skips
                                          re-reading unchanged files
    decoded/<decoding key>/index.json     {"pixels": file, "rows": [hash, ...],
                                           "failed": {hash: reason}}
    decoded/<decoding key>/pixels-<id>.npy  uint8 (N, H, W, C), row i holds rows[i]

Each pixels file is written completely under a new name before index.json (written to a temporary
file, then renamed) points at it, so a reader always sees a matching pair, and a killed process or
several workers writing at once never leave a torn store; the worst case is a decode done twice.

Pixels files are large, so none may be left behind, and none in use may go. A writer holds an
exclusive `flock` on its file from creating it until index.json points at it; every process that
wrote or read a file then holds a shared one until it exits (streamed splits reopen the file in
DataLoader workers). A file the index does not name and nobody holds a lock on is provably
stale, whoever made it: its writer was killed mid-write, or a newer store replaced it and its
last reader is gone. Opening a store, and writing one, removes those (`_sweep`). The kernel drops
a dead process's locks, so a crash leaves nothing that looks in use. Without `fcntl` (not POSIX),
nothing is locked and nothing swept.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from automl_clf.data.preprocess import Decoding
from automl_clf.errors import ImageError

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None  # type: ignore[assignment]

HASH_CHUNK = 1 << 20  # bytes read at a time while hashing
PIXELS_GLOB = "pixels-*.npy"
_IN_USE: dict[Path, int] = {}  # pixels files this process wrote or read -> fd holding its lock


def content_hash(path: Path) -> str:
    """BLAKE2b-128 of the file's bytes, hex."""
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default  # missing or torn by an older crash: rebuild


class HashIndex:
    """Content hashes of files, remembered by (size, mtime) so unchanged files are not re-read."""

    def __init__(self, cache_dir: Path | None) -> None:
        self.path = cache_dir / "hashes.json" if cache_dir is not None else None
        self.known: dict[str, list[Any]] = _read_json(self.path, {}) if self.path else {}
        self.changed = False

    def hash_of(self, path: Path) -> str:
        stat = path.stat()
        key = str(path)
        entry = self.known.get(key)
        if entry is not None and entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns:
            return str(entry[2])
        value = content_hash(path)
        self.known[key] = [stat.st_size, stat.st_mtime_ns, value]
        self.changed = True
        return value

    def hashes(self, paths: Sequence[Path]) -> list[str]:
        values = [self.hash_of(p) for p in paths]
        if self.changed and self.path is not None:
            atomic_write_bytes(self.path, json.dumps(self.known).encode())
            self.changed = False
        return values


def decoding_key(decoding: Decoding) -> str:
    return f"{decoding.image_size}px-{decoding.channels}ch-{decoding.resize}"


DecodeResult = tuple[np.ndarray | None, str | None]  # pixels, or the reason it failed


def decode_files(decoding: Decoding, paths: Sequence[Path], n_threads: int) -> list[DecodeResult]:
    """Decode files in a thread pool (Pillow releases the GIL while decoding and resizing)."""

    def one(path: Path) -> DecodeResult:
        try:
            return decoding.load_file(path), None
        except ImageError as exc:
            return None, f"cannot decode: {exc.reason}"

    if n_threads <= 1 or len(paths) < 64:
        return [one(p) for p in paths]
    pool = ThreadPoolExecutor(max_workers=n_threads)
    try:
        return list(pool.map(one, paths, chunksize=32))
    finally:
        # On Ctrl-C or SIGTERM, drop the files not started yet instead of decoding them all
        # before the interrupt can end the command.
        pool.shutdown(cancel_futures=True)


class DecodedStore:
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
            _sweep(self.folder)
        index = _read_json(self.folder / "index.json", {})
        try:
            path = self.folder / index["pixels"]
            _hold(path)
            pixels = np.load(path, mmap_mode="r")
            usable = pixels.shape[1:] == self.shape and pixels.shape[0] == len(index["rows"])
        except (KeyError, TypeError, OSError, ValueError):
            usable = False  # no store yet, or a damaged one: start afresh
        if not usable:
            if isinstance(index, dict) and isinstance(index.get("pixels"), str):
                _release(self.folder / index["pixels"])
            return
        self.pixels, self.path = pixels, path
        self.rows = {h: i for i, h in enumerate(index["rows"])}
        self.failed = dict(index.get("failed", {}))

    @property
    def shape(self) -> tuple[int, int, int]:
        d = self.decoding
        return (d.image_size, d.image_size, d.channels)

    def ensure(
        self,
        items: Iterable[tuple[str, Path]],
        n_threads: int = 4,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        """Decode every (hash, path) not stored yet, and store the pixels (or the failure)."""
        missing: dict[str, Path] = {}
        for digest, path in items:
            if digest not in self.rows and digest not in self.failed:
                missing.setdefault(digest, path)
        if not missing:
            return
        results = decode_files(self.decoding, list(missing.values()), n_threads)
        new_rows = []
        for digest, (pixels, error) in zip(missing, results, strict=True):
            if pixels is None:
                self.failed[digest] = error or "cannot decode"
            else:
                self.rows[digest] = len(self.rows)
                new_rows.append(pixels)
        if on_progress is not None:
            on_progress(len(missing))
        self._append(new_rows)

    def _append(self, new_rows: list[np.ndarray]) -> None:
        n_old = self.pixels.shape[0]
        total = n_old + len(new_rows)
        if self.folder is None:
            if new_rows:
                self.pixels = np.concatenate([self.pixels, np.stack(new_rows)])
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path, fd = _create_locked(self.folder)
        try:
            out = np.lib.format.open_memmap(
                path, mode="w+", dtype=np.uint8, shape=(total, *self.shape)
            )
            if n_old:
                out[:n_old] = self.pixels
            if new_rows:
                out[n_old:] = np.stack(new_rows)
            out.flush()
            del out
            order = sorted(self.rows, key=self.rows.__getitem__)
            index = {"pixels": path.name, "rows": order, "failed": self.failed}
            atomic_write_bytes(self.folder / "index.json", json.dumps(index).encode())
        except BaseException:
            path.unlink(missing_ok=True)
            os.close(fd)
            raise
        _hold(path, fd)  # written: from now on this process is one of its readers
        previous, self.path = self.path, path
        self.pixels = np.load(path, mmap_mode="r")
        if previous is not None and previous != path:
            _release(previous)  # the sweep removes it unless another process still reads it
        _sweep(self.folder)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _create_locked(folder: Path) -> tuple[Path, int]:
    """A new, empty pixels file, exclusively locked: its writer is at work."""
    while True:
        path = folder / f"pixels-{uuid.uuid4().hex[:12]}.npy"
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


def _sweep(folder: Path) -> None:
    """Remove the stale pixels files in `folder` (see the module docstring)."""
    if fcntl is None:
        return
    for candidate in folder.glob(PIXELS_GLOB):
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
            index = _read_json(folder / "index.json", {})
            named = index.get("pixels") if isinstance(index, dict) else None
            if named != candidate.name and _same_file(fd, candidate):
                candidate.unlink(missing_ok=True)
        finally:
            os.close(fd)
