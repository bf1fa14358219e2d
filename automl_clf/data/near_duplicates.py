"""Near-duplicate images: resized, re-encoded, slightly cropped or brightened copies of one
picture, the commonest way a data set leaks between train, val and test.

Byte-identical files are caught by their content hash (data/dataset.py, `data.duplicates`);
this module finds the copies that are not byte-identical, in three steps:

1. **Hashes.** Every distinct file content is decoded once to a 32×32 grey thumbnail
   (`THUMBNAIL`: the same decoding path as training, at a size that does not depend on the
   spec's image_size, so a study's check does not change with it) and given the 64-bit pHash of
   imagehash (`phash64`: the signs of the 8×8 lowest DCT frequencies against their median),
   and the pHashes of 9 crops of it (92.5% of each side, at a 3×3 grid of positions): a hash of
   the whole image does not survive a crop of 5-10% (31-41% of such crops of digits and photo
   tiles stayed within 8 bits; with the crops' hashes, 93-100%). pHash rather than dHash or
   wHash: at about the same recall on the digits, dHash proposed 75 times more pairs of
   distinct digits, wHash 6 times more (and 100+ among 192 photo tiles, where pHash had none).
2. **Candidates.** Two images are candidates when the whole-image hash of one is at most
   `MAX_DISTANCE` bits from any of the other's 10 hashes, found by a multi-index
   (data/hamming.py), never by comparing all pairs: 100,000 images take seconds.
3. **Confirmation.** A pHash is coarse: distinct 8×8 digits of one class often share it. So a
   candidate pair is confirmed on the thumbnails: aligned (the best of the crops, refined by
   ±1.25% in size and position), their correlation must be about as high as each image's with
   itself moved by half a thumbnail pixel (1 - correlation within `TOLERANCE` times that, and
   `FLOOR` at least), or as high as pixel noise of `NOISE` grey levels allows a low-contrast
   image. The bar follows the image: a smooth one (an upscaled digit) must match to 0.99, a
   textured photograph to about 0.9, a nearly even patch of sky loosely. Correlation ignores
   brightness and contrast; the alignment absorbs a crop or a resize.

Measured (bench/near_duplicates.py: every image copied once by one of the four changes, in
turn), recall as copies ending in their original's cluster, and the pairs of files a cluster
holds whose originals differ:

    set                 resize   JPEG   crop 5-10%   brightness   false pairs
    1,797 digits         0.998  0.967        0.998        0.991    32 (0.982 precise)
    192 photo tiles 64   0.958  0.938        0.938        0.938     0
    78 photo tiles 96    1.000  1.000        0.947        1.000     0
    46 photo tiles 128   0.917  1.000        1.000        0.909     0

The false pairs join 1s of the digits that differ by 16-39 in all over their 64 pixels (on the
digits' 0-16 scale): as little as a JPEG copy of an 8×8 image differs from its original
(21-41), which no rule on the pixels can tell apart.

Confirmed pairs are joined into clusters (union-find): files that all look alike, through
their neighbours. Candidates are confirmed closest first, and one already joined through others
is skipped, so a set of heavily overlapping copies costs about one confirmation an image.

Under the cache folder, in `near_duplicates/`: the thumbnails (an ordinary decoded store of
data/stores.py, `decoded/32px-1ch-squash/`), the hashes of each content (`phash.npz`) and the
confirmed pairs of each set of contents (`pairs-<digest>.json`); so `validate`, `search` and
`run` decode each file once at 32 px, the first time, and afterwards read two small files.
Files that cannot be decoded are left out here (and skipped where they are used).

What a data set does with the clusters (`data.near_duplicates`), see `check_near_duplicates`:
`group` (the default) keeps each cluster in one split when autoclf made the split, so the
held-out scores are honest; `warn` only reports them; `off` does not look. A data set without
clusters splits exactly as it did before this check existed.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from automl_clf.data.cache import HashIndex, atomic_write_bytes
from automl_clf.data.discover import Discovered
from automl_clf.data.hamming import pairs_within
from automl_clf.data.preprocess import Decoding
from automl_clf.data.split import Splits, keep_together
from automl_clf.data.stores import DecodedStore
from automl_clf.machine import usable_cpus

THUMBNAIL = Decoding(image_size=32, channels=1, resize="squash")  # what is hashed and compared
SIDE = 32  # the thumbnail's side, pixels
HASH_SIDE = 8  # pHash keeps the 8×8 lowest DCT frequencies: 64 bits
CROP = 0.075  # the crops hashed besides the whole image: this share of each side cut off
POSITIONS = (0.0, 0.5, 1.0)  # where the crops sit: at either edge or centred, on each axis
MAX_DISTANCE = 8  # bits (of 64) between hashes for a candidate pair
REFINE = 0.0125  # the best crop is refined by this share of a side, in size and position
JITTER = 0.5 / SIDE  # the shift an image is compared with itself at: half a thumbnail pixel
TOLERANCE = 2.0  # a pair may differ this many times as much as the image and its jitter
FLOOR = 0.01  # ... and by 1 - correlation = FLOOR at least
NOISE = 1.5  # grey levels a pixel may move by re-encoding and resampling alone: what a
# low-contrast image's correlation loses to it, 1 - correlation = (NOISE / its std)^2, is allowed
HASH_CHUNK = 2048  # thumbnails hashed at once (bounds memory: 75 MB)
PAIR_CHUNK = 256  # candidate pairs confirmed at once (bounds memory: 60 MB)
VERSION = 1  # of the hashes and the rule; a cache of another version is recomputed
CACHE_FOLDER = "near_duplicates"

Mode = Literal["group", "warn", "off"]


@dataclass(frozen=True)
class NearPair:
    """Two files that look alike (each stands for every file with its content)."""

    first: Path
    second: Path
    distance: int  # bits between their closest hashes (whole image or crop)
    similarity: float  # correlation of the aligned thumbnails, -1 to 1


@dataclass(frozen=True)
class NearDuplicates:
    """What `find_near_duplicates` found among some files."""

    clusters: list[tuple[Path, ...]]  # files that look alike: 2+ distinct contents each, sorted
    pairs: list[NearPair]  # the confirmed pairs the clusters were joined from
    n_candidates: int  # pairs the hashes proposed, before confirmation


def find_near_duplicates(
    paths: Sequence[Path],
    *,
    hashes: dict[Path, str] | None = None,
    cache_dir: Path | None = None,
    n_threads: int | None = None,
) -> NearDuplicates:
    """Clusters of files that look alike (see the module docstring): what a bench scores.

    Args:
        paths: the image files; files with the same content count as one image.
        hashes: each path's content hash (data/cache.py `content_hash`); computed if None.
        cache_dir: the data cache folder: thumbnails, hashes and pairs are kept there and
            reused; None keeps everything in memory.
        n_threads: decoding threads (default: one per CPU core).
    """
    if hashes is None:
        digests = HashIndex(cache_dir).hashes(list(paths))
        hashes = dict(zip(paths, digests, strict=True))
    files: dict[str, list[Path]] = {}
    for path in paths:
        files.setdefault(hashes[path], []).append(path)
    for group in files.values():
        group.sort(key=str)
    contents = sorted(files, key=lambda d: str(files[d][0]))
    thumbnails = _Thumbnails(cache_dir, files, n_threads or usable_cpus())
    table = _content_hashes(contents, thumbnails, cache_dir)
    contents = [d for d in contents if d in table]  # the decodable ones
    raw, n_candidates = _confirmed_pairs(contents, table, thumbnails, cache_dir)
    pairs = [NearPair(files[a][0], files[b][0], d, s) for a, b, d, s in raw]
    index = {d: i for i, d in enumerate(contents)}
    joined = _Clusters(len(contents))
    for a, b, _, _ in raw:
        joined.join(index[a], index[b])
    groups = [[contents[i] for i in g] for g in joined.groups()]
    clusters = [tuple(sorted((p for d in g for p in files[d]), key=str)) for g in groups]
    return NearDuplicates(sorted(clusters, key=lambda c: str(c[0])), pairs, n_candidates)


# --- the hashes ---------------------------------------------------------------------------


def phash64(pixels: np.ndarray) -> np.ndarray:
    """imagehash's `phash` of uint8 (N, 32, 32) grey images, as uint64 (N,), batched.

    Bit for bit what `int(str(imagehash.phash(image)), 16)` gives for a 32×32 "L" image (a
    test checks it): the unnormalised DCT-II of the rows, then of the columns (scipy's), its
    8×8 lowest frequencies compared with their median, row by row, the first bit highest.
    Batched, because imagehash takes 0.2-0.3 ms an image in Python calls, and a data set of
    100,000 images has a million crops to hash. Coefficients are rounded to 1e-6 first, so an
    even image's zero frequencies are zero, not rounding noise.
    """
    x = np.asarray(pixels, dtype=np.float64).reshape(-1, SIDE, SIDE)
    k, n = np.arange(HASH_SIDE)[:, None], np.arange(SIDE)[None, :]
    dct = 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * SIDE))  # (8, 32)
    low = np.round(dct @ x @ dct.T, 6).reshape(len(x), HASH_SIDE * HASH_SIDE)
    bits = low > np.median(low, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").astype(np.uint64).ravel()


def _boxes() -> list[tuple[float, float, float, float]]:
    """The crops hashed besides the whole image: (left, top, right, bottom), shares of a side."""
    keep = 1.0 - CROP
    return [
        (CROP * x, CROP * y, CROP * x + keep, CROP * y + keep)
        for y, x in itertools.product(POSITIONS, POSITIONS)
    ]


BOXES = _boxes()


def _axis(start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """float32 (..., 32, 32) matrices that sample [start, stop) (shares of a side) of a
    32-pixel axis at 32 points, linearly interpolated: `m @ image` crops and resizes the rows."""
    start, stop = np.asarray(start, dtype=np.float64), np.asarray(stop, dtype=np.float64)
    step = (stop - start)[..., None] / SIDE
    where = (start[..., None] + (np.arange(SIDE) + 0.5) * step) * SIDE - 0.5
    where = np.clip(where, 0.0, SIDE - 1.0 - 1e-9)[..., None]  # the last pixel: 1e-9 before it
    left = np.floor(where).astype(np.int64)
    weight = (where - left).astype(np.float32)
    out = np.zeros((*where.shape[:-1], SIDE), dtype=np.float32)
    np.put_along_axis(out, left, 1.0 - weight, axis=-1)
    np.put_along_axis(out, left + 1, weight, axis=-1)
    return out


def _crop(images: np.ndarray, box: tuple[float, float, float, float] | np.ndarray) -> np.ndarray:
    """`images` (N, 32, 32) cropped to `box` (one, or one per image: (..., N, 4)) and resized
    back to 32×32, bilinear."""
    box = np.asarray(box, dtype=np.float64)
    rows, cols = _axis(box[..., 1], box[..., 3]), _axis(box[..., 0], box[..., 2])
    return rows @ images @ np.swapaxes(cols, -1, -2)


def _hash_all(thumbnails: np.ndarray) -> np.ndarray:
    """uint64 (N, 1 + len(BOXES)): the pHash of each whole thumbnail, then of each crop."""
    out = np.empty((len(thumbnails), 1 + len(BOXES)), dtype=np.uint64)
    for start in range(0, len(thumbnails), HASH_CHUNK):
        part = thumbnails[start : start + HASH_CHUNK].astype(np.float64)
        out[start : start + len(part), 0] = phash64(part)
        for i, box in enumerate(BOXES, start=1):
            crops = np.clip(np.rint(_crop(part, box)), 0, 255)  # as an 8-bit image would be
            out[start : start + len(part), i] = phash64(crops)
    return out


class _Thumbnails:
    """The 32×32 grey thumbnails of some contents, decoded (or read from the cache) on first
    use only: with the hashes and pairs cached, none is needed."""

    def __init__(self, cache_dir: Path | None, files: dict[str, list[Path]], n_threads: int):
        self.cache_dir, self.files, self.n_threads = cache_dir, files, n_threads
        self.store: DecodedStore | None = None

    def ensure(self, digests: Sequence[str]) -> set[str]:
        """Decode those not stored yet (all at once: the store rewrites its file each time it
        grows); returns those that cannot be decoded."""
        if self.store is None:  # under near_duplicates/: the training stores' folder stays theirs
            folder = self.cache_dir / CACHE_FOLDER if self.cache_dir is not None else None
            self.store = DecodedStore(folder, THUMBNAIL)
        self.store.ensure(((d, self.files[d][0]) for d in digests), n_threads=self.n_threads)
        return {d for d in digests if d in self.store.failed}

    def take(self, digests: Sequence[str]) -> np.ndarray:
        """float32 (N, 32, 32) thumbnails of decodable contents `ensure` was given."""
        assert self.store is not None
        pixels = self.store.take(digests) if digests else np.zeros((0, SIDE, SIDE, 1), np.uint8)
        return np.asarray(pixels, dtype=np.float32)[..., 0]


def _content_hashes(
    contents: list[str], thumbnails: _Thumbnails, cache_dir: Path | None
) -> dict[str, np.ndarray]:
    """Each decodable content's hashes (`_hash_all`'s row), from the cache or computed."""
    path = cache_dir / CACHE_FOLDER / "phash.npz" if cache_dir is not None else None
    known, failed = _read_hashes(path)
    missing = [d for d in contents if d not in known and d not in failed]
    if missing:
        unreadable = thumbnails.ensure(missing)
        decoded = [d for d in missing if d not in unreadable]
        for start in range(0, len(decoded), HASH_CHUNK):  # bounds memory whatever the count
            part = decoded[start : start + HASH_CHUNK]
            known.update(zip(part, _hash_all(thumbnails.take(part)), strict=True))
        failed |= unreadable
        if path is not None:
            _write_hashes(path, known, failed)
    return {d: known[d] for d in contents if d in known}


def _read_hashes(path: Path | None) -> tuple[dict[str, np.ndarray], set[str]]:
    if path is None:
        return {}, set()
    try:
        with np.load(path) as saved:
            if int(saved["version"]) != VERSION:
                return {}, set()
            digests = [d.decode() for d in saved["digests"]]
            rows = saved["hashes"]
            failed = {d.decode() for d in saved["failed"]}
    except (OSError, ValueError, KeyError):
        return {}, set()  # none yet, or a damaged one: computed again
    return dict(zip(digests, rows, strict=True)), failed


def _write_hashes(path: Path, known: dict[str, np.ndarray], failed: set[str]) -> None:
    digests = sorted(known)
    rows = np.stack([known[d] for d in digests]) if digests else np.zeros((0, 1 + len(BOXES)))
    buffer = io.BytesIO()
    np.savez(
        buffer,
        version=np.int64(VERSION),
        digests=np.array([d.encode() for d in digests], dtype="S32"),
        hashes=rows.astype(np.uint64),
        failed=np.array(sorted(d.encode() for d in failed), dtype="S32"),
    )
    atomic_write_bytes(path, buffer.getvalue())


# --- the pairs ----------------------------------------------------------------------------

RawPair = tuple[str, str, int, float]  # content hashes, distance in bits, similarity


def _confirmed_pairs(
    contents: list[str],
    table: dict[str, np.ndarray],
    thumbnails: _Thumbnails,
    cache_dir: Path | None,
) -> tuple[list[RawPair], int]:
    """The confirmed pairs that join `contents` into clusters, and how many pairs were
    candidates; cached per set of contents.

    Candidates are confirmed closest first, `PAIR_CHUNK` at a time, and one whose two contents
    confirmed pairs already join is skipped: it cannot change the clusters. So a data set of
    many overlapping copies (2,000 crops of two photographs: 45,000 candidates) confirms about
    one pair an image, not every pair. The pairs returned are those that joined two clusters
    (a spanning forest of each), not every pair alike.
    """
    digest = hashlib.blake2b(f"v{VERSION}\n".encode(), digest_size=12)
    for content in contents:
        digest.update(content.encode())
    path = None
    if cache_dir is not None:
        path = cache_dir / CACHE_FOLDER / f"pairs-{digest.hexdigest()}.json"
        try:
            saved = json.loads(path.read_text())
            return [tuple(p) for p in saved["pairs"]], int(saved["candidates"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not computed yet for these contents
    hashes = np.stack([table[d] for d in contents]) if contents else np.zeros((0, 1), np.uint64)
    owners = np.repeat(np.arange(len(contents)), hashes.shape[1])
    query, owner, distance = pairs_within(hashes[:, 0], hashes.ravel(), owners, MAX_DISTANCE)
    first, second = np.minimum(query, owner), np.maximum(query, owner)
    order = np.lexsort((second, first, distance))  # closest first; each pair at its closest
    first, second, distance = first[order], second[order], distance[order]
    key = first * len(contents) + second
    _, once = np.unique(key, return_index=True)
    once.sort()
    first, second, distance = first[once], second[once], distance[once]
    clusters = _Clusters(len(contents))
    wanted = [contents[i] for i in np.unique(np.concatenate([first, second]))]
    thumbnails.ensure(wanted)  # all decodable: they were hashed
    pairs: list[RawPair] = []
    for start in range(0, len(first), PAIR_CHUNK):
        a, b, d = (x[start : start + PAIR_CHUNK] for x in (first, second, distance))
        apart = clusters.root(a) != clusters.root(b)
        a, b, d = a[apart], b[apart], d[apart]
        if not len(a):
            continue
        similarity, accepted = _confirm(a, b, contents, thumbnails)
        for i, j, bits, value in zip(
            a[accepted], b[accepted], d[accepted], similarity[accepted], strict=True
        ):
            if clusters.join(int(i), int(j)):  # not joined by the chunk's closer pairs
                pairs.append((contents[i], contents[j], int(bits), round(float(value), 4)))
    if path is not None:
        text = json.dumps({"version": VERSION, "candidates": len(first), "pairs": pairs})
        atomic_write_bytes(path, text.encode())
    return pairs, len(first)


class _Clusters:
    """Union-find over items 0..n-1: which confirmed pairs join, directly or through others."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def root(self, items: np.ndarray) -> np.ndarray:
        roots = self.parent[items]
        while True:
            up = self.parent[roots]
            if np.array_equal(up, roots):
                return roots
            roots = up

    def join(self, a: int, b: int) -> bool:
        """Join a's set and b's; whether they were apart."""
        ra, rb = (int(r) for r in self.root(np.array([a, b])))
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)
        self.parent[a] = self.parent[b] = min(ra, rb)  # shorten the paths walked next
        return ra != rb

    def groups(self) -> list[list[int]]:
        """The sets of 2+ items, each in item order."""
        roots = self.root(np.arange(len(self.parent)))
        found: dict[int, list[int]] = {}
        for item, root in enumerate(roots.tolist()):
            found.setdefault(root, []).append(item)
        return [g for g in found.values() if len(g) > 1]


def _confirm(
    first: np.ndarray, second: np.ndarray, contents: list[str], thumbnails: _Thumbnails
) -> tuple[np.ndarray, np.ndarray]:
    """Each candidate pair's aligned similarity, and whether it is confirmed (see the module
    docstring); their thumbnails must have been `ensure`d."""
    involved = np.unique(np.concatenate([first, second]))
    pixels = thumbnails.take([contents[i] for i in involved])
    a, b = np.searchsorted(involved, first), np.searchsorted(involved, second)
    similarity = aligned_similarity(pixels[a], pixels[b])
    jitter = _self_similarity(pixels)
    own = np.minimum(jitter[a], jitter[b])
    contrast = pixels.std(axis=(1, 2))
    with np.errstate(divide="ignore"):
        noise = (NOISE / np.minimum(contrast[a], contrast[b])) ** 2
    allowed = np.maximum(np.maximum(FLOOR, TOLERANCE * (1.0 - own)), noise)
    return similarity, 1.0 - similarity <= allowed


def correlation(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair of (..., 32, 32) images: blind to brightness and
    contrast. Two even images (one grey level throughout) correlate 1, an even one and one
    with a pattern 0."""
    a = first - first.mean(axis=(-2, -1), keepdims=True)
    b = second - second.mean(axis=(-2, -1), keepdims=True)
    aa, bb = (a * a).sum(axis=(-2, -1)), (b * b).sum(axis=(-2, -1))
    even = SIDE * SIDE * 0.01**2  # a std under 0.01 grey levels: rounding noise
    flat_a, flat_b = aa < even, bb < even
    value = (a * b).sum(axis=(-2, -1)) / np.sqrt(np.maximum(aa * bb, 1e-12))
    return np.where(flat_a | flat_b, (flat_a & flat_b).astype(np.float64), value)


def aligned_similarity(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The best correlation of each pair of thumbnails (N, 32, 32): the one as it is against
    the other as it is or cropped to one of `BOXES`, that crop then refined by ±`REFINE` in
    size and position."""
    first, second = first.astype(np.float32), second.astype(np.float32)
    best = correlation(first, second)
    boxes = np.asarray(BOXES)[:, None, :]  # (9, 1, 4): every box for every pair
    crop_first = correlation(_crop(first, boxes), second)  # (9, N)
    crop_second = correlation(first, _crop(second, boxes))
    k_first, k_second = crop_first.argmax(axis=0), crop_second.argmax(axis=0)
    pairs = np.arange(len(first))
    top_first, top_second = crop_first[k_first, pairs], crop_second[k_second, pairs]
    cut_first = top_first >= top_second  # which image the best crop cuts
    top = np.maximum(top_first, top_second)
    refine = np.flatnonzero(top > best)  # a crop matched better than the whole image
    best = np.maximum(best, top)
    if not refine.size:
        return best
    cut = cut_first[refine]
    base = np.asarray(BOXES)[np.where(cut, k_first[refine], k_second[refine])]
    steps = np.array(list(itertools.product((-REFINE, 0.0, REFINE), repeat=3)))  # (27, 3)
    side = np.clip((base[:, 2] - base[:, 0])[None] + steps[:, :1], 1.0 - 2 * CROP, 1.0)
    left = np.clip(base[None, :, 0] + steps[:, 1:2], 0.0, 1.0 - side)
    top_edge = np.clip(base[None, :, 1] + steps[:, 2:3], 0.0, 1.0 - side)
    around = np.stack([left, top_edge, left + side, top_edge + side], axis=-1)  # (27, R, 4)
    cropped = np.where(cut[:, None, None], first[refine], second[refine])
    other = np.where(cut[:, None, None], second[refine], first[refine])
    value = correlation(_crop(cropped, around), other).max(axis=0)
    best[refine] = np.maximum(best[refine], value)
    return best


def _self_similarity(pixels: np.ndarray) -> np.ndarray:
    """How well each thumbnail correlates with itself moved by `JITTER`: what resampling and a
    residual misalignment alone cost it (a textured image loses more than a smooth one)."""
    moved = (
        correlation(pixels, _crop(pixels, (JITTER, JITTER, 1.0, 1.0))),
        correlation(pixels, _crop(pixels, (0.0, 0.0, 1.0 - JITTER, 1.0 - JITTER))),
    )
    return np.minimum(*moved)


# --- a data set's clusters and its splits -------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """Files that look alike, and the split each was in before any was moved."""

    files: tuple[Path, ...]  # sorted; the first is the one whose split the others join
    splits: tuple[str, ...]  # train/val/test, or "" for an exact copy dropped from val/test

    @property
    def split_names(self) -> list[str]:
        return [s for s in ("train", "val", "test") if s in self.splits]

    @property
    def straddles(self) -> bool:
        return len(self.split_names) > 1


@dataclass(frozen=True)
class NearDuplicateReport:
    """A data set's near-duplicates and what `data.near_duplicates` did with them."""

    mode: Mode
    clusters: tuple[Cluster, ...]
    pairs: tuple[NearPair, ...]
    n_candidates: int
    movable: bool  # autoclf made the split (not the folders or the manifest)
    n_moved: int  # files moved to keep their cluster in one split
    # a study made on the split before grouping resumes on it (Dataset.keep_split): nothing moved
    kept_study_split: bool = False

    @property
    def straddling(self) -> list[Cluster]:
        """The clusters that straddled splits (before `group` moved any file)."""
        return [c for c in self.clusters if c.straddles]

    @property
    def n_files(self) -> int:
        return sum(len(c.files) for c in self.clusters)

    def leaks(self) -> list[tuple[Path, str, Path, str]]:
        """Every two files of one cluster that were in different splits: (file, its split,
        file, its split), train before val before test. What leaked before `group`, and what
        still leaks under `warn` or in splits autoclf cannot move."""
        rank = {"train": 0, "val": 1, "test": 2}
        out = []
        for cluster in self.straddling:
            placed = [(f, s) for f, s in zip(cluster.files, cluster.splits, strict=True) if s]
            for (f, s), (g, t) in itertools.combinations(placed, 2):
                if s != t:
                    out.append((f, s, g, t) if rank[s] <= rank[t] else (g, t, f, s))
        return out

    def summary(self) -> str:
        """One line for the data phase of `run` and `search`; "" when nothing straddles."""
        straddling = self.straddling
        if not straddling:
            return ""
        found = (
            f"{len(straddling)} cluster(s) of near-duplicate images straddled train/val/test "
            f"({len(self.clusters)} cluster(s), {self.n_files} images in all)"
        )
        if self.kept_study_split:
            return (
                f"{found}; held-out scores may be inflated: this study was made on the split "
                "before near-duplicates were grouped and keeps it (a new study groups them)"
            )
        if self.mode == "group" and self.movable:
            return (
                f"{found}: moved {self.n_moved} image(s) so each cluster is in one split "
                "(data.near_duplicates: group; warn keeps the plain split)"
            )
        if self.mode == "group":
            return (
                f"{found}; held-out scores may be inflated, and autoclf cannot move images "
                "between splits you gave (train/val/test folders or a manifest's split "
                "column): move them yourself; `autoclf validate` lists them"
            )
        return (
            f"{found}; held-out scores may be inflated (data.near_duplicates: warn; group "
            "keeps each cluster in one split)"
        )


def shown_path(path: Path, root: Path) -> str:
    """A file as the user knows it: relative to the data root when inside it."""
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def check_near_duplicates(
    mode: Mode,
    discovered: Discovered,
    splits: Splits,
    hashes: dict[Path, str],
    cache_dir: Path | None,
    n_threads: int | None = None,
) -> tuple[Splits, NearDuplicateReport | None]:
    """Find the near-duplicates among every discovered file and, under `group` on a split
    autoclf made, move each cluster's files into the split of its first file that is in one.

    Only clusters that straddle splits move anything, so a data set without them keeps its
    split, and its fingerprint, exactly. A pre-split data set (folders or a manifest's split
    column) keeps its split: leakage is reported, never fixed behind the user's back.

    Raises:
        DataError: moving a cluster would leave a split without a class.
    """
    if mode == "off":
        return splits, None
    paths = [s.path for part in discovered.samples.values() for s in part]
    found = find_near_duplicates(paths, hashes=hashes, cache_dir=cache_dir, n_threads=n_threads)
    where = {s.path: name for name, part in splits.by_name().items() for s in part}
    clusters = tuple(Cluster(c, tuple(where.get(p, "") for p in c)) for c in found.clusters)
    movable = not discovered.presplit
    n_moved = 0
    if mode == "group" and movable:
        groups = [[f for f in c.files if f in where] for c in clusters if c.straddles]
        splits, n_moved = keep_together(splits, groups, discovered.classes)
    report = NearDuplicateReport(
        mode, clusters, tuple(found.pairs), found.n_candidates, movable, n_moved
    )
    return splits, report
