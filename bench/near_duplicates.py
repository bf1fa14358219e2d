"""The near-duplicate check (data/near_duplicates.py): how well it finds copies, what it
flags wrongly, and what it costs.

Method.

- quality: real images written as files, seeded: scikit-learn's 1,797 digits (8×8 PNGs, as
  `autoclf datasets digits` writes them) and non-overlapping tiles of the three photographs at
  hand (scikit-learn's two sample images and matplotlib's grace_hopper.jpg), 64, 96 and 128 px
  a side. Of a seeded `--share` of the originals (default all), one copy each, made by
  `automl_clf.datasets.near_copy` in turn: resized, re-encoded as JPEG, cropped by 5-10%,
  brightened or darkened. `find_near_duplicates` over originals and copies. Recall: the share
  of (original, copy) pairs that end in one cluster, by change. False pairs: the pairs of
  files that a cluster holds (what `leaks()` reports when they straddle splits) whose
  originals differ; precision: the share of those pairs that are true.
- index: `--n-hashes` random 64-bit hashes (default 100,000; each with 9 more, as a content has
  for its crops), with `--planted` near pairs (0-8 bits apart) planted: the time
  `pairs_within` takes at radius 8, the planted pairs found, and the time brute force takes on
  5,000 of them, scaled by (n / 5,000)^2 to what all pairs would take.
- cost: `find_near_duplicates` cold (no cache: decode every file at 32 px, hash, index,
  confirm), then with a cache folder, first and second call, on the digits and on
  `--n-photos` (default 2,000) JPEGs of bench/data_scale.py: random crops (40-100% of a side)
  of two photographs at 200-600 px, each with a class's shape drawn on it. Those overlap: they
  are the near-duplicate data set of issue 18, clusters of hundreds.

Measured (2026-12, 2 cores shared with other sessions, so wall-clock figures are noisy; rerun
on a quiet machine): see the README ("Near-duplicates") for the table this prints.

    python bench/near_duplicates.py [--share 1.0] [--n-hashes 100000] [--planted 1000]
        [--n-photos 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/data_scale.py

from automl_clf.data.hamming import pairs_within, popcount
from automl_clf.data.near_duplicates import MAX_DISTANCE, find_near_duplicates
from automl_clf.datasets import COPY_KINDS, near_copy, write_digits


def photographs() -> list[Image.Image]:
    from matplotlib import cbook
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(a) for a in load_sample_images().images]
    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        photos.append(Image.open(handle).convert("RGB"))
    return photos


def tiles(side: int) -> list[Image.Image]:
    """Non-overlapping side×side tiles of the photographs: distinct images."""
    out = []
    for photo in photographs():
        w, h = photo.size
        for y in range(0, h - side + 1, side):
            for x in range(0, w - side + 1, side):
                out.append(photo.crop((x, y, x + side, y + side)))
    return out


def write_set(name: str, folder: Path, share: float, seed: int) -> tuple[list[Path], dict]:
    """Originals and copies as files; returns the files and copy -> (original, transform)."""
    folder.mkdir(parents=True)
    if name == "digits":
        write_digits(folder / "orig")
        originals = sorted((folder / "orig").rglob("*.png"))
    else:
        originals = []
        for i, tile in enumerate(tiles(int(name.removeprefix("tiles")))):
            path = folder / "orig" / f"{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            tile.save(path)
            originals.append(path)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(originals), round(share * len(originals)), replace=False)
    copies = {}
    for k, index in enumerate(sorted(chosen)):
        kind = COPY_KINDS[k % len(COPY_KINDS)]
        with Image.open(originals[index]) as image:
            copy = near_copy(image, kind, rng)
        path = folder / "copies" / f"{kind}-{originals[index].parent.name}-{index:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        copy.save(path)
        copies[path] = (originals[index], kind)
    return originals + sorted(copies), copies


def quality(share: float, seed: int) -> None:
    print("quality: pair recall by transformation; false pairs, precision")
    print(
        f"  {'set':9} {'images':>6} {'copies':>6}  "
        + "  ".join(f"{t:>10}" for t in COPY_KINDS)
        + f"  {'false':>5}  {'precision':>9}  {'seconds':>7}"
    )
    for name in ("digits", "tiles64", "tiles96", "tiles128"):
        with tempfile.TemporaryDirectory() as tmp:
            paths, copies = write_set(name, Path(tmp) / name, share, seed)
            start = time.perf_counter()
            found = find_near_duplicates(paths)
            seconds = time.perf_counter() - start
            cluster_of = {p: i for i, c in enumerate(found.clusters) for p in c}
            source = {p: p for p in paths} | {c: o for c, (o, _) in copies.items()}
            recall = []
            for kind in COPY_KINDS:
                mine = [(c, o) for c, (o, k) in copies.items() if k == kind]
                hit = [cluster_of.get(c, -1) == cluster_of.get(o, -2) for c, o in mine]
                recall.append(f"{np.mean(hit):10.3f}")
            # the pairs a cluster implies (what `leaks()` reports when they straddle)
            implied = [(a, b) for c in found.clusters for a, b in itertools.combinations(c, 2)]
            false = sum(source[a] != source[b] for a, b in implied)
            precision = 1.0 - false / max(1, len(implied))
            print(
                f"  {name:9} {len(paths) - len(copies):6d} {len(copies):6d}  "
                + "  ".join(recall)
                + f"  {false:5d}  {precision:9.3f}  {seconds:7.1f}"
            )


def index(n: int, planted: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    per = 10  # a content's whole-image hash and its 9 crops'
    table = rng.integers(0, 2**64 - 1, size=(n, per), dtype=np.uint64, endpoint=True)
    pairs = set()
    used: set[int] = set()
    while len(pairs) < planted:
        i, j = (int(x) for x in rng.choice(n, 2, replace=False))
        if i in used or j in used:
            continue
        used |= {i, j}
        bits = rng.choice(64, int(rng.integers(0, MAX_DISTANCE + 1)), replace=False)
        table[j, 0] = table[i, int(rng.integers(0, per))] ^ np.uint64(
            sum(1 << int(b) for b in bits)
        )
        pairs.add((min(i, j), max(i, j)))
    owners = np.repeat(np.arange(n), per)
    start = time.perf_counter()
    q, o, _ = pairs_within(table[:, 0], table.ravel(), owners, MAX_DISTANCE)
    seconds = time.perf_counter() - start
    found = {(min(a, b), max(a, b)) for a, b in zip(q.tolist(), o.tolist(), strict=True)}
    m = min(n, 5000)
    start = time.perf_counter()
    for row in range(m):
        popcount(table[row, 0] ^ table[:m]).min(axis=1)
    brute = (time.perf_counter() - start) * (n / m) ** 2
    print(
        f"index: {n:,} contents ({n * per:,} hashes), radius {MAX_DISTANCE}: {seconds:.1f} s, "
        f"{len(pairs & found)}/{len(pairs)} planted pairs found, {len(found - pairs)} others; "
        f"all pairs by brute force: about {brute:,.0f} s"
    )


def cost(n_photos: int) -> None:
    from data_scale import generate  # bench/data_scale.py's photographs

    with tempfile.TemporaryDirectory() as tmp:
        digits = sorted(write_digits(Path(tmp) / "digits").rglob("*.png"))
        generate(Path(tmp) / "photos", n_photos)
        photos = sorted((Path(tmp) / "photos").rglob("*.jpg"))
        for name, paths in (("digits", digits), ("overlapping photo crops", photos)):
            cache = Path(tmp) / f"cache-{len(paths)}"
            for label, where in (("no cache", None), ("cache, first", cache), ("again", cache)):
                start = time.perf_counter()
                found = find_near_duplicates(paths, cache_dir=where)
                seconds = time.perf_counter() - start
                print(f"cost: {len(paths)} {name}, {label}: {seconds:.2f} s")
            sizes = sorted(map(len, found.clusters), reverse=True)
            print(
                f"  {found.n_candidates} candidate pairs, {len(found.pairs)} confirmed (joining "
                f"clusters), {len(found.clusters)} clusters of {sum(sizes)} images, the largest "
                f"{sizes[:4]}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--share", type=float, default=1.0)
    parser.add_argument("--n-hashes", type=int, default=100_000)
    parser.add_argument("--planted", type=int, default=1000)
    parser.add_argument("--n-photos", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    quality(args.share, args.seed)
    index(args.n_hashes, args.planted, args.seed)
    cost(args.n_photos)


if __name__ == "__main__":
    main()
