"""Near-duplicate images on real ones: scikit-learn's digits and photographs, with copies made
the four ways real data sets get them."""

from __future__ import annotations

import os
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from automl_clf.cli import app
from automl_clf.data import load_dataset
from automl_clf.data.discover import Sample, discover
from automl_clf.data.near_duplicates import (
    THUMBNAIL,
    find_near_duplicates,
    phash64,
)
from automl_clf.data.split import Splits, keep_together, split
from automl_clf.datasets import COPY_KINDS, near_copy, write_digits
from automl_clf.errors import DataError
from automl_clf.spec import parse_spec
from automl_clf.spec.models import DataSpec
from tests.conftest import tiny_spec, write_spec

DIGITS = {"classes": [0, 1, 7], "per_class": 30}  # 90 digits, no two of them alike


def data_spec(root: Path, **values: object) -> DataSpec:
    raw = {"data": {"root": str(root), "image_size": 8, "channels": 1, **values}}
    return parse_spec(raw, base_dir=root).data


def photo_tiles(side: int = 64, n: int = 24) -> list[Image.Image]:
    """Non-overlapping tiles of scikit-learn's sample photograph of a temple: distinct images
    with a photograph's texture. Tiles of nearly even sky are left out: with a few grey levels
    of pattern, re-encoding noise is as strong as the pattern, and no hash survives it (a
    documented limit)."""
    from sklearn.datasets import load_sample_images

    photo = Image.fromarray(load_sample_images().images[0])
    w, h = photo.size
    corners = [(x, y) for y in range(0, h - side + 1, side) for x in range(0, w - side + 1, side)]
    tiles = [photo.crop((x, y, x + side, y + side)) for x, y in corners]
    return [t for t in tiles if np.asarray(t.convert("L")).std() > 10][:n]


def add_copies(files: list[Path], per_kind: int, seed: int) -> dict[Path, Path]:
    """`per_kind` near-duplicates of each kind, of distinct files, written beside them (in the
    same class folder); copy -> original."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(files), per_kind * len(COPY_KINDS), replace=False)
    copies = {}
    for k, index in enumerate(chosen):
        original = files[index]
        kind = COPY_KINDS[k % len(COPY_KINDS)]
        with Image.open(original) as image:
            path = original.with_name(f"copy-{kind}-{original.stem}.png")
            near_copy(image, kind, rng).save(path)
        copies[path] = original
    return copies


def digits_with_copies(folder: Path, per_kind: int = 3, seed: int = 0) -> dict[Path, Path]:
    root = write_digits(folder, **DIGITS)  # type: ignore[arg-type]
    return add_copies(sorted(root.rglob("*.png")), per_kind, seed)


def test_phash64_is_imagehash_phash_bit_for_bit(tmp_path: Path) -> None:
    root = write_digits(tmp_path / "digits", **DIGITS)  # type: ignore[arg-type]
    thumbnails = [THUMBNAIL.load_file(p)[..., 0] for p in sorted(root.rglob("*.png"))]
    thumbnails += [THUMBNAIL.load_image(tile)[..., 0] for tile in photo_tiles()]
    thumbnails.append(np.full((32, 32), 77, dtype=np.uint8))  # even: imagehash gives the DC bit
    reference = [int(str(imagehash.phash(Image.fromarray(t))), 16) for t in thumbnails]
    assert phash64(np.stack(thumbnails)).tolist() == reference


def test_copies_are_found_and_distinct_digits_and_photographs_are_not(tmp_path: Path) -> None:
    copies = digits_with_copies(tmp_path / "digits")
    tiles = tmp_path / "photos"
    tiles.mkdir()
    for i, tile in enumerate(photo_tiles()):
        tile.save(tiles / f"{i:02d}.png")
    copies |= add_copies(sorted(tiles.glob("*.png")), 2, seed=1)
    paths = sorted(tmp_path.rglob("*.png"))
    found = find_near_duplicates(paths)
    # each copy with its original, and nothing else: every kind of copy was made, on both sets
    assert {frozenset(c) for c in found.clusters} == {frozenset(p) for p in copies.items()}
    assert {p.name.split("-")[1] for p in copies} == set(COPY_KINDS)
    assert found.n_candidates >= len(found.pairs) == len(copies)


def test_group_keeps_every_cluster_in_one_split_and_warn_reports_the_leaks(
    tmp_path: Path,
) -> None:
    copies = digits_with_copies(tmp_path / "data", per_kind=4)
    warned = load_dataset(data_spec(tmp_path / "data", near_duplicates="warn"))
    grouped = load_dataset(data_spec(tmp_path / "data"))  # group: the default
    assert warned.near_duplicates is not None and grouped.near_duplicates is not None
    straddling = warned.near_duplicates.straddling
    assert straddling  # the plain split scattered some of the 16 clusters
    leaks = warned.near_duplicates.leaks()
    assert {frozenset((a, b)) for a, _, b, _ in leaks} <= {frozenset(p) for p in copies.items()}
    assert len(leaks) == len(straddling)  # two files a cluster: one pair each
    assert any("straddled" in w and "warn" in w for w in warned.warnings())

    where = {s.path: name for name, part in grouped.splits.by_name().items() for s in part}
    for cluster in grouped.near_duplicates.clusters:
        assert len({where[f] for f in cluster.files}) == 1
        assert where[cluster.files[0]] == cluster.splits[0]  # the others joined the first
    assert grouped.near_duplicates.n_moved == len(straddling)
    assert any("moved" in w for w in grouped.warnings())
    # only the clusters' files moved
    before = {s.path: name for name, part in warned.splits.by_name().items() for s in part}
    moved = {p for p in where if where[p] != before[p]}
    assert moved and all(any(p in c.files for c in straddling) for p in moved)


def test_without_clusters_the_split_is_exactly_the_one_before_this_check(
    tmp_path: Path,
) -> None:
    root = write_digits(tmp_path / "data", **DIGITS)  # type: ignore[arg-type]
    spec = data_spec(root)
    grouped = load_dataset(spec)
    assert grouped.near_duplicates is not None and not grouped.near_duplicates.clusters
    unchecked = load_dataset(data_spec(root, near_duplicates="off"))
    assert unchecked.near_duplicates is None
    # the split as it was made before near-duplicates were looked for: discover, split
    from automl_clf.data.dataset import fingerprint

    found = discover(root)
    plain = split(found, spec.split)
    assert grouped.splits == plain
    assert (
        grouped.fingerprint == unchecked.fingerprint == fingerprint(plain, found, grouped.hashes)
    )


def test_a_presplit_folder_keeps_its_split_and_is_warned_about(tmp_path: Path) -> None:
    source = write_digits(tmp_path / "digits", **DIGITS)  # type: ignore[arg-type]
    for label in ("0", "1", "7"):
        files = sorted((source / label).glob("*.png"))
        for i, path in enumerate(files):
            part = "train" if i < 20 else "val" if i < 25 else "test"
            (tmp_path / "data" / part / label).mkdir(parents=True, exist_ok=True)
            path.rename(tmp_path / "data" / part / label / path.name)
    original = sorted((tmp_path / "data" / "train" / "1").glob("*.png"))[0]
    with Image.open(original) as image:  # a brightened copy of a training image, in test
        near_copy(image, "brightness", np.random.default_rng(0)).save(
            tmp_path / "data" / "test" / "1" / "copy.png"
        )
    grouped = load_dataset(data_spec(tmp_path / "data"))
    warned = load_dataset(data_spec(tmp_path / "data", near_duplicates="warn"))
    near = grouped.near_duplicates
    assert near is not None and not near.movable and near.n_moved == 0
    assert [c.splits for c in near.straddling] == [("test", "train")]  # copy.png sorts first
    assert grouped.fingerprint == warned.fingerprint  # nothing moved
    assert any("cannot move images between splits you gave" in w for w in grouped.warnings())


def test_moving_a_cluster_that_would_empty_a_class_from_a_split_is_refused() -> None:
    def sample(name: str, label: int) -> Sample:
        return Sample(Path(name), label)

    splits = Splits(
        train=[sample("a0", 0), sample("b0", 1), sample("a1", 0)],
        val=[sample("a2", 0), sample("a4", 0), sample("b1", 1)],
        test=[sample("a3", 0), sample("b2", 1)],
    )
    moved, n = keep_together(splits, [[Path("a1"), Path("a2")]], ["a", "b"])
    assert n == 1 and [s.path.name for s in moved.train] == ["a0", "a1", "a2", "b0"]
    assert moved.test is splits.test  # untouched splits are the same lists
    with pytest.raises(DataError, match=r"leaves the test split without class\(es\) 'b'"):
        keep_together(splits, [[Path("b0"), Path("b2")]], ["a", "b"])


def test_a_cached_check_reads_no_image_again(tmp_path: Path) -> None:
    copies = digits_with_copies(tmp_path / "data")
    paths = sorted((tmp_path / "data").rglob("*.png"))
    cache = tmp_path / "cache"
    first = find_near_duplicates(paths, cache_dir=cache)
    assert sorted(p.name for p in (cache / "near_duplicates").iterdir()) == [
        "decoded",
        *(p.name for p in (cache / "near_duplicates").glob("pairs-*.json")),
        "phash.npz",
    ]
    for path in paths:  # other bytes, same size and time: only a file read would notice
        status = path.stat()
        path.write_bytes(bytes(status.st_size))
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
    again = find_near_duplicates(paths, cache_dir=cache)
    assert again.clusters == first.clusters and len(again.clusters) == len(copies)


def test_validate_lists_the_clusters_and_the_pairs_across_splits(tmp_path: Path) -> None:
    copies = digits_with_copies(tmp_path / "data")
    values = {"root": str(tmp_path / "data"), "image_size": 8, "near_duplicates": "warn"}
    spec = write_spec(tmp_path / "spec.yaml", {"data": values})
    result = CliRunner().invoke(app, ["validate", str(spec)], env={"COLUMNS": "500"})
    assert result.exit_code == 0, result.output
    assert f"{len(copies)} cluster(s) of near-duplicate images" in result.output
    for copy, original in copies.items():
        assert f"{copy.parent.name}/{copy.name}" in result.output
        assert f"{original.parent.name}/{original.name}" in result.output
    assert "pair(s) across splits" in result.output and "warning" in result.output

    values["near_duplicates"] = "off"
    write_spec(tmp_path / "spec.yaml", {"data": values})
    result = CliRunner().invoke(app, ["validate", str(spec)], env={"COLUMNS": "500"})
    assert "near-duplicates: not looked for" in result.output


@pytest.mark.slow
def test_search_says_in_one_line_what_happened_to_clusters_across_splits(
    tmp_path: Path,
) -> None:
    digits_with_copies(tmp_path / "data", per_kind=4)
    spec = write_spec(
        tmp_path / "spec.yaml", tiny_spec(tmp_path / "data", tmp_path, study={"n_trials": 1})
    )
    result = CliRunner().invoke(app, ["search", str(spec)], env={"COLUMNS": "500"})
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "near-duplicate" in line]
    assert len(lines) == 1 and "straddled" in lines[0] and "moved" in lines[0], result.output


def test_the_pairs_returned_are_those_that_joined_the_cluster(tmp_path: Path) -> None:
    root = write_digits(tmp_path / "data", **DIGITS)  # type: ignore[arg-type]
    original = sorted(root.rglob("*.png"))[0]
    rng = np.random.default_rng(0)
    with Image.open(original) as image:
        for kind in ("resize", "brightness", "jpeg"):
            near_copy(image, kind, rng).save(original.with_name(f"copy-{kind}.png"))
    found = find_near_duplicates(sorted(root.rglob("*.png")))
    (cluster,) = found.clusters
    assert len(cluster) == 4 and original in cluster
    assert len(found.pairs) == 3  # a tree that joins the four, not all six pairs alike
    assert found.n_candidates >= 6  # all six were candidates


@pytest.mark.slow
def test_a_study_made_before_grouping_resumes_on_its_own_split(tmp_path: Path) -> None:
    """A study whose split scattered a cluster (made before this check, or under `warn`) is
    not refused as 'other data' once grouping would move files: it keeps the split it was made
    with, and the leak is said instead."""
    digits_with_copies(tmp_path / "data", per_kind=4)
    raw = tiny_spec(tmp_path / "data", tmp_path, study={"n_trials": 1})
    raw["data"]["near_duplicates"] = "warn"  # the split every study had before grouping
    spec = write_spec(tmp_path / "spec.yaml", raw)
    runner = CliRunner()
    assert runner.invoke(app, ["search", str(spec)]).exit_code == 0
    raw["data"]["near_duplicates"] = "group"
    raw["study"]["n_trials"] = 2
    write_spec(spec, raw)
    result = runner.invoke(app, ["search", str(spec)], env={"COLUMNS": "500"})
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "made on the split before near-duplicates were grouped and keeps it" in said
    assert "2 complete" in said or "2 finished" in said or "target 2" in said
