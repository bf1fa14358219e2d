"""The data cache: content hashes of image files, and what the stores of decoded pixels keyed by
them share.

Why hand-written: the stores must be keyed by file *content* (so a renamed or copied file is not
decoded again, and an edited one is) and by the decoding, shared by every trial, rerun and
worker, and readable piece by piece for data sets larger than memory; no well-kept library does
that for numpy image arrays without a server.

Two files hold it. This one has the parts every store and reader uses: content hashes
(`HashIndex`), the decoding key of a store's folder, atomic writes, a write error that says how
to go on (`cache_writes`), decoding files in threads, and the lossless codec of the shard store.
data/stores.py has the two stores (`DecodedStore`, `ShardStore`), the views of their rows a
split holds (`LazyRows`, `ShardRows`), and the file locks and sweep that let processes share
them: the stores' concurrency lives in one file, apart from what has none.

Layout under the cache folder:

    hashes.json                           path -> [size, mtime_ns, content hash]: skips
                                          re-reading unchanged files
    decoded/<decoding key>/index.json     {"pixels": file, "rows": [hash, ...],
                                           "failed": {hash: reason}}
    decoded/<decoding key>/pixels-<id>.npy  uint8 (N, H, W, C), row i holds rows[i] (rows past
                                          those are unused: files that failed to decode)
    encoded/<decoding key>/index.json     {"format": 1, "shards": {file: {"hashes": [...],
                                           "ends": [byte offset after each image]}},
                                           "failed": {hash: reason}}
    encoded/<decoding key>/shard-<id>.webps  lossless WebP images, one after the other
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from automl_clf.data.preprocess import Decoding
from automl_clf.errors import DataError, ImageError

HASH_CHUNK = 1 << 20  # bytes read at a time while hashing


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


@contextlib.contextmanager
def cache_writes(cache_dir: Path | None) -> Iterator[None]:
    """Within: an OSError (a read-only folder, a full disk) is the DataError that says the
    cache `cache_dir` cannot be written, and how to go on. Only around writing: a file that
    cannot be read is the image's own error."""
    try:
        yield
    except OSError as exc:
        raise DataError(
            f"cannot write the data cache {cache_dir} ({exc.strerror or exc}: "
            f"{exc.filename}); make it writable, or point data.cache_dir at another folder, "
            "or set data.cache: false (decode into memory on each run)"
        ) from None


def read_json(path: Path, default: Any) -> Any:
    """A JSON file of the cache, or `default` when it is missing or torn (by an older crash):
    the cache rebuilds what it cannot read."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


class HashIndex:
    """Content hashes of files, remembered by (size, mtime) so unchanged files are not re-read."""

    def __init__(self, cache_dir: Path | None) -> None:
        self.path = cache_dir / "hashes.json" if cache_dir is not None else None
        self.known: dict[str, list[Any]] = read_json(self.path, {}) if self.path else {}
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
            with cache_writes(self.path.parent):
                atomic_write_bytes(self.path, json.dumps(self.known).encode())
            self.changed = False
        return values


def decoding_key(decoding: Decoding) -> str:
    return f"{decoding.image_size}px-{decoding.channels}ch-{decoding.resize}"


DecodeResult = tuple[np.ndarray | None, str | None]  # pixels, or the reason it failed
EncodeResult = tuple[bytes | None, str | None]  # compressed pixels, or the reason it failed
_T = TypeVar("_T")


def _map_files(one: Callable[[Path], _T], paths: Sequence[Path], n_threads: int) -> list[_T]:
    """`one` over `paths` in a thread pool (Pillow releases the GIL while decoding, resizing and
    compressing)."""
    if n_threads <= 1 or len(paths) < 64:
        return [one(p) for p in paths]
    pool = ThreadPoolExecutor(max_workers=n_threads)
    try:
        return list(pool.map(one, paths, chunksize=32))
    finally:
        # On Ctrl-C or SIGTERM, drop the files not started yet instead of decoding them all
        # before the interrupt can end the command.
        pool.shutdown(cancel_futures=True)


def decode_files(decoding: Decoding, paths: Sequence[Path], n_threads: int) -> list[DecodeResult]:
    """Decode files in a thread pool."""

    def one(path: Path) -> DecodeResult:
        try:
            return decoding.load_file(path), None
        except ImageError as exc:
            return None, f"cannot decode: {exc.reason}"

    return _map_files(one, paths, n_threads)


def encode_files(decoding: Decoding, paths: Sequence[Path], n_threads: int) -> list[EncodeResult]:
    """Decode files and compress their pixels losslessly (`encode_pixels`), in a thread pool."""

    def one(path: Path) -> EncodeResult:
        try:
            return encode_pixels(decoding.load_file(path)), None
        except ImageError as exc:
            return None, f"cannot decode: {exc.reason}"

    return _map_files(one, paths, n_threads)


def encode_pixels(pixels: np.ndarray) -> bytes:
    """uint8 (H, W, C) pixels as a lossless WebP: `decode_pixels` gives back the same array.

    Method 0 is libwebp's fastest effort; lossless is exact at every effort, a higher one only
    saves a few percent more (bench/data_scale.py)."""
    image = Image.fromarray(
        np.ascontiguousarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    )
    out = io.BytesIO()
    image.save(out, "WEBP", lossless=True, method=0)
    return out.getvalue()


def decode_pixels(data: bytes, channels: int) -> np.ndarray:
    """The uint8 (H, W, channels) pixels `encode_pixels` compressed.

    WebP holds colour only: a grey image comes back with R = G = B, its value in each."""
    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    return pixels[:, :, :1] if channels == 1 else pixels
