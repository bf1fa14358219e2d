"""Data discovery, splitting and preprocessing on small generated folder trees."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
from PIL import Image
from typer.testing import CliRunner

from automl_clf.cli import app
from automl_clf.data import Decoding, load_dataset
from automl_clf.data.augment import transform_list
from automl_clf.data.batches import TrainBatches, eval_batches
from automl_clf.data.discover import discover
from automl_clf.data.preprocess import build_preprocessing
from automl_clf.errors import DataError
from automl_clf.models.factory import backbone_mean_std
from automl_clf.spec import load_spec, parse_spec
from automl_clf.spec.config import AugmentConfig, DataConfig
from automl_clf.spec.models import DataSpec
from tests.conftest import fails_if_blocked, tiny_spec, write_png_bomb, write_spec

NO_MIX = {
    "magnitude": 1.0,
    "transforms": None,
    "mixup": 0.0,
    "mixup_alpha": None,
    "cutmix": 0.0,
    "cutmix_alpha": None,
}


def write_images(folder: Path, n: int, size: int = 10) -> None:
    """n distinct random images (distinct across folders too: the seed is the folder's path)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(list(str(folder).encode()))
    for i in range(n):
        pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")


def data_spec(root: Path, **values: object) -> DataSpec:
    spec = parse_spec({"data": {"root": str(root), "image_size": 8, **values}}, base_dir=root)
    return spec.data


def test_hidden_non_image_and_empty_files_are_skipped_and_counted(tmp_path: Path) -> None:
    for name in ("cat", "dog"):
        write_images(tmp_path / name, 10)
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "dog" / "empty.png").write_bytes(b"")
    found = discover(tmp_path)
    assert found.classes == ["cat", "dog"]
    assert len(found.samples["all"]) == 20
    reasons = {p.path.name: p.reason for p in found.skipped}
    assert reasons == {
        ".DS_Store": "hidden file",
        "notes.txt": "not an image file (.txt)",
        "empty.png": "empty file",
    }


def test_unusable_folders_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found"):
        discover(tmp_path / "missing")
    write_images(tmp_path / "only", 5)
    with pytest.raises(DataError, match="at least 2 class folders"):
        discover(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="class 'empty' has no usable image"):
        discover(tmp_path)


def test_split_is_stratified_disjoint_and_identical_across_loads(tmp_path: Path) -> None:
    write_images(tmp_path / "a", 40)
    write_images(tmp_path / "b", 20)
    first, second = load_dataset(data_spec(tmp_path)), load_dataset(data_spec(tmp_path))
    assert first.fingerprint == second.fingerprint
    assert first.counts() == {"train": [28, 14], "val": [6, 3], "test": [6, 3]}
    paths = [{s.path for s in part} for part in first.splits.by_name().values()]
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])
    other_seed = load_dataset(data_spec(tmp_path, split={"seed": 1}))
    assert other_seed.fingerprint != first.fingerprint


def test_presplit_folders_are_used_as_given_and_val_is_carved(tmp_path: Path) -> None:
    for split, n in (("train", 30), ("test", 5)):
        for name in ("a", "b"):
            write_images(tmp_path / split / name, n)
    dataset = load_dataset(data_spec(tmp_path))
    assert dataset.presplit
    counts = dataset.counts()
    assert counts["test"] == [5, 5]
    assert sum(counts["val"]) == 9 and min(counts["val"]) == 4  # 15% of train, stratified
    assert sum(counts["train"]) == 51


def test_too_few_images_for_a_split_is_a_clear_error(tmp_path: Path) -> None:
    write_images(tmp_path / "a", 20)
    write_images(tmp_path / "b", 2)
    with pytest.raises(
        DataError, match=r"test split \(15%\) would hold no image of class\(es\) b"
    ):
        load_dataset(data_spec(tmp_path))


def test_corrupt_file_is_skipped_with_its_reason(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_images(tmp_path / name, 12)
    (tmp_path / "a" / "zz_truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    dataset = load_dataset(data_spec(tmp_path, channels=1))
    arrays = dataset.arrays(Decoding(image_size=8, channels=1, resize="squash"))
    assert sum(len(a) for a in arrays.values()) == 24
    assert any(
        "cannot decode" in s.reason and s.path.name == "zz_truncated.png" for s in dataset.skipped
    )


@pytest.mark.parametrize("resize", ["squash", "letterbox", "center_crop"])
def test_decoding_gives_the_configured_shape_for_any_mode(tmp_path: Path, resize: str) -> None:
    images = {
        "rgba.png": Image.new("RGBA", (20, 10), (255, 0, 0, 128)),
        "gray16.png": Image.fromarray(np.full((10, 20), 65535, dtype=np.uint16)),
        "palette.gif": Image.new("P", (12, 12)),
    }
    for name, image in images.items():
        image.save(tmp_path / name)
    for channels in (1, 3):
        decoding = Decoding(image_size=8, channels=channels, resize=resize)  # type: ignore[arg-type]
        for name in images:
            pixels = decoding.load_file(tmp_path / name)
            assert pixels.shape == (8, 8, channels) and pixels.dtype == np.uint8
    white = Decoding(image_size=8, channels=1, resize="squash").load_file(tmp_path / "gray16.png")
    assert white.max() == 255  # 16-bit white stays white


def test_validation_batches_are_preprocessing_output_every_epoch(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_images(tmp_path / name, 12)
    dataset = load_dataset(data_spec(tmp_path, channels=3))
    arrays = dataset.arrays(Decoding(image_size=8, channels=3, resize="squash"))
    config = DataConfig(image_size=8, channels=3, resize="squash", normalize="dataset")
    pre = build_preprocessing(config, backbone_mean_std("cnn"), ((0.5,) * 3, (0.25,) * 3))
    first = [x for x, _ in eval_batches(arrays["val"], 4, pre)]
    second = [x for x, _ in eval_batches(arrays["val"], 4, pre)]
    assert all(bool((a == b).all()) for a, b in zip(first, second, strict=True))
    assert bool((first[0] == pre.to_tensor(arrays["val"].pixels[:4])).all())
    # The training builder is the only one that takes augmentation, and it changes pixels.
    heavy = transform_list(AugmentConfig(**NO_MIX, policy="heavy", hflip=True))
    augmented = TrainBatches(arrays["train"], 32, pre, heavy, seed=0, n_classes=2)
    plain = TrainBatches(arrays["train"], 32, pre, [], seed=0, n_classes=2)
    (x, y), (x_plain, y_plain) = next(augmented.epoch(1)), next(plain.epoch(1))
    assert bool((y == y_plain).all())  # same order: the order does not depend on augmentation
    assert not bool((x == x_plain).all())
    again = TrainBatches(arrays["train"], 32, pre, heavy, seed=0, n_classes=2)
    assert bool((next(again.epoch(1))[0] == x).all())  # seeded: the same epoch is the same
    assert not bool((next(again.epoch(2))[0] == x).all())  # and the next epoch differs


def test_symlinks_that_leave_the_root_are_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for name in ("a", "b"):
        write_images(root / name, 6)
    write_images(tmp_path / "outside", 1)
    (root / "a" / "escape.png").symlink_to(tmp_path / "outside" / "0.png")
    (root / "a" / "inside.png").symlink_to(root / "b" / "0.png")
    found = discover(root)
    assert {s.path.name for s in found.skipped} == {"escape.png"}
    assert "leaves the data root" in found.skipped[0].reason
    assert any(s.path.name == "inside.png" for s in found.samples["all"])


def test_every_pillow_format_and_exif_orientation(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (12, 20, 3), dtype=np.uint8)
    pixels[:6, :10] = 255  # a white top-left corner shows which way up the image is
    image = Image.fromarray(pixels)
    for ext in ("png", "jpg", "bmp", "tiff", "webp", "gif"):
        image.save(tmp_path / f"plain.{ext}")
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation 6: display rotated 90° clockwise
    image.save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    image.transpose(Image.Transpose.ROTATE_270).save(tmp_path / "upright.jpg", quality=95)
    decoding = Decoding(image_size=16, channels=3, resize="letterbox")
    for ext in ("png", "jpg", "bmp", "tiff", "webp", "gif"):
        assert decoding.load_file(tmp_path / f"plain.{ext}").shape == (16, 16, 3)
    rotated = decoding.load_file(tmp_path / "rotated.jpg").astype(int)
    upright = decoding.load_file(tmp_path / "upright.jpg").astype(int)
    unrotated = decoding.load_file(tmp_path / "plain.jpg").astype(int)
    assert np.abs(rotated - upright).mean() < 6  # JPEG noise only
    assert np.abs(rotated - unrotated).mean() > 30


def write_manifest(path: Path, rows: list[tuple[str, ...]], header: str) -> Path:
    path.write_text(header + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    return path


def test_csv_manifest_without_and_with_splits(tmp_path: Path) -> None:
    for name in ("cat", "dog"):
        write_images(tmp_path / "img" / name, 20)
    rows = [(f"img/{c}/{i}.png", c) for c in ("cat", "dog") for i in range(20)]
    rows.append(("img/cat/missing.png", "cat"))
    spec = data_spec_manifest(write_manifest(tmp_path / "all.csv", rows, "path,label"))
    dataset = load_dataset(spec)
    assert dataset.classes == ["cat", "dog"] and not dataset.presplit
    assert sum(sum(c) for c in dataset.counts().values()) == 40
    assert [s.reason for s in dataset.skipped] == ["missing file"]

    split_rows = [
        (p, c, "test" if p.endswith(("/0.png", "/1.png")) else "train") for p, c in rows[:-1]
    ]
    spec = data_spec_manifest(
        write_manifest(tmp_path / "split.csv", split_rows, "path,label,split")
    )
    dataset = load_dataset(spec)
    assert dataset.presplit
    assert dataset.counts()["test"] == [2, 2]
    assert sum(dataset.counts()["val"]) > 0  # carved from train, stratified


def test_csv_manifest_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="columns path,label"):
        load_dataset(
            data_spec_manifest(write_manifest(tmp_path / "a.csv", [("x", "y")], "file,cls"))
        )
    rows = [("a.png", "a", "train"), ("b.png", "b", "holdout")]
    with pytest.raises(DataError, match="unknown split"):
        load_dataset(
            data_spec_manifest(write_manifest(tmp_path / "b.csv", rows, "path,label,split"))
        )


def data_spec_manifest(manifest: Path) -> DataSpec:
    raw = {"data": {"manifest": str(manifest), "image_size": 8}}
    return parse_spec(raw, base_dir=manifest.parent).data


def test_duplicates_across_splits_are_dropped_from_val_and_test(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_images(tmp_path / name, 30)
    for i in range(30):  # every "a" image also appears under a new name: some land in val/test
        (tmp_path / "a" / f"copy_{i}.png").write_bytes((tmp_path / "a" / f"{i}.png").read_bytes())
    dropped = load_dataset(data_spec(tmp_path))
    kept = load_dataset(data_spec(tmp_path, duplicates="keep"))
    assert dropped.duplicates and len(dropped.duplicates) == len(kept.duplicates)
    assert dropped.n_dropped > 0 and kept.n_dropped == 0
    hashes = dropped.hashes
    train = {hashes[s.path] for s in dropped.splits.train}
    val = {hashes[s.path] for s in dropped.splits.val}
    test = {hashes[s.path] for s in dropped.splits.test}
    assert not (train & val) and not (train & test) and not (val & test)
    assert any("more than one split" in w for w in dropped.warnings())


def test_decoded_pixels_are_cached_on_disk_by_content(tmp_path: Path) -> None:
    root, cache = tmp_path / "data", tmp_path / "cache"
    for name in ("a", "b"):
        write_images(root / name, 10)
    decoding = Decoding(image_size=8, channels=3, resize="squash")
    spec = data_spec(root, cache_dir=str(cache))
    first = load_dataset(spec).arrays(decoding)
    index = next(cache.glob("decoded/*/index.json"))
    written = index.stat().st_mtime_ns
    second = load_dataset(spec).arrays(decoding)  # a new run: everything comes from the cache
    assert index.stat().st_mtime_ns == written
    for name in ("train", "val", "test"):
        assert np.array_equal(first[name].pixels, second[name].pixels)
    (root / "a" / "0.png").rename(root / "a" / "renamed.png")  # same content, new name
    load_dataset(spec).arrays(decoding)
    assert index.stat().st_mtime_ns == written  # keyed by content: nothing to decode
    write_images(root / "b" / "more", 1)
    (root / "b" / "more" / "0.png").rename(root / "b" / "new.png")
    load_dataset(spec).arrays(decoding)
    assert index.stat().st_mtime_ns != written  # one new content: decoded and added


def _locked_by_another_process(path: Path) -> subprocess.Popen[bytes]:
    """A real process holding an exclusive lock on `path`, as a pixels file's writer does until
    its index names the file; returns once the lock is held."""
    code = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
    return holder


def _cached_store(tmp_path: Path) -> tuple[DataSpec, Decoding, Path]:
    root, cache = tmp_path / "data", tmp_path / "cache"
    for name in ("a", "b"):
        write_images(root / name, 10)
    decoding = Decoding(image_size=8, channels=3, resize="squash")
    spec = data_spec(root, cache_dir=str(cache))
    load_dataset(spec).arrays(decoding)
    return spec, decoding, next(cache.glob("decoded/*"))


def test_killed_writers_pixels_files_are_removed_and_working_writers_kept(
    tmp_path: Path,
) -> None:
    spec, decoding, folder = _cached_store(tmp_path)
    (current,) = folder.glob("pixels-*.npy")
    # What a writer leaves mid-write: a full-size pixels file that no index names yet. One writer
    # is still at work (it holds its lock); the other was killed (the kernel dropped its lock).
    killed, working = folder / "pixels-killed.npy", folder / "pixels-working.npy"
    for leftover in (killed, working):
        shutil.copy(current, leftover)
    dead = _locked_by_another_process(killed)
    dead.kill()
    dead.wait()
    alive = _locked_by_another_process(working)
    try:
        first = load_dataset(spec).arrays(decoding)  # a new run opens the store
        assert not killed.exists()
        assert working.exists()  # never taken from under a writer
        assert current.exists()
    finally:
        alive.kill()
        alive.wait()
    again = load_dataset(spec).arrays(decoding)
    assert list(folder.glob("pixels-*.npy")) == [current]
    for name in ("train", "val", "test"):
        assert np.array_equal(first[name].pixels, again[name].pixels)


def test_a_rebuilt_pixels_store_leaves_no_old_file_behind(tmp_path: Path) -> None:
    spec, decoding, folder = _cached_store(tmp_path)
    (damaged,) = folder.glob("pixels-*.npy")
    damaged.write_bytes(damaged.read_bytes()[:100])  # a torn file: the store is rebuilt
    load_dataset(spec).arrays(decoding)
    (rebuilt,) = folder.glob("pixels-*.npy")
    assert rebuilt != damaged
    assert json.loads((folder / "index.json").read_text())["pixels"] == rebuilt.name


@pytest.mark.slow
def test_streamed_split_gives_the_same_batches_as_memory(tmp_path: Path) -> None:
    root, cache = tmp_path / "data", str(tmp_path / "cache")
    for name in ("a", "b"):
        write_images(root / name, 16)
    decoding = Decoding(image_size=8, channels=3, resize="squash")
    memory = load_dataset(data_spec(root, loading="memory", cache_dir=cache))
    stream = load_dataset(data_spec(root, loading="stream", cache_dir=cache))
    in_memory, streamed = memory.arrays(decoding), stream.arrays(decoding)
    assert streamed["train"].streamed and not in_memory["train"].streamed
    config = DataConfig(image_size=8, channels=3, resize="squash", normalize="none")
    pre = build_preprocessing(config, backbone_mean_std("cnn"), None)
    for a, b in zip(
        eval_batches(in_memory["val"], 4, pre), eval_batches(streamed["val"], 4, pre), strict=True
    ):
        assert bool((a[0] == b[0]).all())
    light = transform_list(AugmentConfig(**NO_MIX, policy="light", hflip=False))
    workers = TrainBatches(streamed["train"], 8, pre, light, seed=3, n_classes=2, workers=1)
    try:
        labels = [y for _, y in workers.epoch(1)]
        again = [y for _, y in workers.epoch(1)]
    finally:
        workers.close()
    plain = TrainBatches(in_memory["train"], 8, pre, light, seed=3, n_classes=2)
    assert [y.tolist() for y in labels] == [y.tolist() for _, y in plain.epoch(1)]  # same order
    assert [y.tolist() for y in labels] == [y.tolist() for y in again]


def test_oversampling_draws_every_class_about_equally(tmp_path: Path) -> None:
    write_images(tmp_path / "big", 60)
    write_images(tmp_path / "small", 10)
    dataset = load_dataset(data_spec(tmp_path))
    train = dataset.arrays(Decoding(image_size=8, channels=3, resize="squash"))["train"]
    config = DataConfig(image_size=8, channels=3, resize="squash", normalize="none")
    pre = build_preprocessing(config, backbone_mean_std("cnn"), None)
    drawn = np.concatenate(
        [
            y.numpy()
            for e in range(1, 6)
            for _, y in TrainBatches(train, 16, pre, [], 0, n_classes=2, oversample=True).epoch(e)
        ]
    )
    share = np.bincount(drawn, minlength=2) / len(drawn)
    assert abs(share[1] - 0.5) < 0.1  # 1 in 7 training images, drawn half the time
    assert any("imbalanced classes" in w for w in dataset.warnings())


@pytest.mark.parametrize(
    ("normalize", "backbone", "mean"),
    [
        ("imagenet", "test_resnet", 0.5),  # timm's pretrained config for it says 0.5
        ("auto", "test_resnet", 0.5),
        ("imagenet", "test_efficientnet", float(np.mean((0.485, 0.456, 0.406)))),
        ("imagenet", "cnn", float(np.mean((0.485, 0.456, 0.406)))),
        ("auto", "cnn", 0.25),  # the training split's
        ("none", "test_resnet", 0.0),
    ],
)
def test_normalisation_follows_what_the_weights_expect(
    normalize: str, backbone: str, mean: float
) -> None:
    config = DataConfig(image_size=8, channels=1, resize="squash", normalize=normalize)  # type: ignore[arg-type]
    pre = build_preprocessing(config, backbone_mean_std(backbone), ((0.25,), (0.1,)))
    assert pre.mean == pytest.approx((mean,))


def validate_folder(root: Path, spec_dir: Path) -> str:
    """`autoclf validate` on `root` at 8 px; its output, after asserting exit 0."""
    spec = write_spec(spec_dir / "spec.yaml", {"data": {"root": str(root), "image_size": 8}})
    result = CliRunner().invoke(app, ["validate", str(spec)], env={"COLUMNS": "500"})
    assert result.exit_code == 0, result.output
    return result.output


def test_a_decompression_bomb_is_skipped_and_listed_like_a_corrupt_file(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_images(tmp_path / "data" / name, 12)
    write_png_bomb(tmp_path / "data" / "a" / "bomb.png")  # 15000 x 15000 px in ~30 KB
    output = validate_folder(tmp_path / "data", tmp_path)
    assert "1 file(s) skipped" in output
    assert "bomb.png: cannot decode: too large: 225,000,000 pixels" in output
    dataset = load_dataset(data_spec(tmp_path / "data"))
    arrays = dataset.arrays(Decoding(image_size=8, channels=3, resize="squash"))
    assert sum(len(a) for a in arrays.values()) == 24


def test_a_large_image_within_pillows_limit_is_decoded_without_its_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40 x 40 is then "large but allowed"
    for name in ("a", "b"):
        write_images(tmp_path / "data" / name, 12)
    Image.new("RGB", (40, 40), (200, 10, 10)).save(tmp_path / "data" / "a" / "large.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        output = validate_folder(tmp_path / "data", tmp_path)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert "skipped" not in output  # decoded and used


def test_a_fifo_in_a_data_folder_is_skipped_and_counted_never_opened(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_images(tmp_path / name, 12)
    os.mkfifo(tmp_path / "a" / "pipe.png")  # opening it would wait for a writer forever
    with fails_if_blocked():
        dataset = load_dataset(data_spec(tmp_path))
        dataset.arrays(Decoding(image_size=8, channels=3, resize="squash"))
    assert [(s.path.name, s.reason) for s in dataset.skipped] == [
        ("pipe.png", "not a regular file (a FIFO)")
    ]


def test_hidden_and_linked_sub_folders_are_skipped_and_counted(tmp_path: Path) -> None:
    for name in ("a", "b", ".thumbnails", "a/.versions", "elsewhere"):
        write_images(tmp_path / name, 3)
    (tmp_path / "b" / "more").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    found = discover(tmp_path)
    assert found.classes == ["a", "b", "elsewhere"]
    reasons = {s.path.relative_to(tmp_path).as_posix(): s.reason for s in found.skipped}
    assert reasons == {
        ".thumbnails": "hidden folder (not searched)",
        "a/.versions": "hidden folder (not searched)",
        "b/more": "symlinked folder (not entered)",
    }


@pytest.mark.parametrize("link", ["c", "test"])
def test_a_class_or_split_folder_linking_out_of_the_root_is_refused(
    tmp_path: Path, link: str
) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    prefix = "train/" if link == "test" else ""
    for name in ("a", "b"):
        write_images(root / prefix / name, 6)
        write_images(outside / name, 6)
    (root / link).symlink_to(outside, target_is_directory=True)
    with pytest.raises(DataError, match=f"{link} is a symlink that leaves the data root"):
        discover(root)


def test_csv_manifest_from_excel_with_a_bom_padded_splits_and_a_row_without_label(
    tmp_path: Path,
) -> None:
    for name in ("cat", "dog"):
        write_images(tmp_path / "img" / name, 11)
    lines = [f"img/{c}/{i}.png,{c}, train " for c in ("cat", "dog") for i in range(10)]
    lines.append("img/cat/10.png")  # a row cut short: no label, no split
    manifest = tmp_path / "labels.csv"
    manifest.write_text("\ufeffpath,label,split\n" + "\n".join(lines) + "\n", "utf-8")
    dataset = load_dataset(data_spec_manifest(manifest))
    assert dataset.presplit and dataset.classes == ["cat", "dog"]
    assert [(s.path.name, s.reason) for s in dataset.skipped] == [("10.png", "no label")]


def test_csv_manifest_refuses_a_file_listed_twice_naming_both_rows(tmp_path: Path) -> None:
    for name in ("cat", "dog"):
        write_images(tmp_path / "img" / name, 3)
    rows = [(f"img/{c}/{i}.png", c) for c in ("cat", "dog") for i in range(3)]
    rows.append(("./img/cat/1.png", "dog"))
    manifest = write_manifest(tmp_path / "labels.csv", rows, "path,label")
    with pytest.raises(DataError, match=r"lines 3 \(label cat\) and 8 \(label dog\)"):
        load_dataset(data_spec_manifest(manifest))


def test_csv_manifest_uses_files_outside_its_folder_by_path_or_symlink(tmp_path: Path) -> None:
    for name in ("cat", "dog"):
        write_images(tmp_path / "img" / name, 10)
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "linked.png").symlink_to(tmp_path / "img" / "dog" / "0.png")
    os.mkfifo(tmp_path / "img" / "pipe.png")
    rows = [(f"../img/{c}/{i}.png", c) for c in ("cat", "dog") for i in range(1, 10)]
    rows += [(str(tmp_path / "img" / "cat" / "0.png"), "cat"), ("linked.png", "dog")]
    rows.append(("../img/pipe.png", "cat"))
    manifest = write_manifest(tmp_path / "lists" / "labels.csv", rows, "path,label")
    with fails_if_blocked():
        dataset = load_dataset(data_spec_manifest(manifest))
    assert sum(sum(c) for c in dataset.counts().values()) == 20
    assert [(s.path.name, s.reason) for s in dataset.skipped] == [
        ("pipe.png", "not a regular file (a FIFO)")
    ]


@pytest.mark.slow
def test_a_streamed_search_trains_on_the_same_images_as_memory(
    tmp_path: Path, digits_root: Path
) -> None:
    """`data.loading: stream` end to end: spawned DataLoader workers read the on-disk cache,
    and each trial learns exactly what the same trial learns from memory."""
    values = {}
    for loading in ("memory", "stream"):
        raw = tiny_spec(
            digits_root,
            tmp_path / loading,
            study={"name": loading, "n_trials": 2, "pruner": {"kind": "none"}},
            data={"loading": loading, "workers": 1, "cache_dir": str(tmp_path / "cache")},
            train={"epochs": 2},
        )
        (tmp_path / loading).mkdir()
        spec = write_spec(tmp_path / loading / "spec.yaml", raw)
        result = CliRunner().invoke(app, ["search", str(spec)])
        assert result.exit_code == 0, result.output
        loaded = load_spec(spec)
        study = optuna.load_study(study_name=loaded.study.name, storage=loaded.study.storage)
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
        values[loading] = [t.intermediate_values for t in study.trials]
    assert values["stream"] == values["memory"]


def test_an_image_outside_every_class_folder_is_listed_as_skipped(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_images(tmp_path / "flat" / name, 12)
    write_images(tmp_path / "flat", 1)  # flat/0.png: directly in the root
    (tmp_path / "flat" / "README.txt").write_text("not data, not listed")
    for split, name in (("train", "a"), ("train", "b"), ("test", "a"), ("test", "b")):
        write_images(tmp_path / "presplit" / split / name, 12)
    write_images(tmp_path / "presplit" / "test", 1)  # in a split folder, in no class
    for root, loose in (("flat", "0.png"), ("presplit", "test/0.png")):
        skipped = discover(tmp_path / root).skipped
        assert [(s.path.relative_to(tmp_path / root).as_posix(), s.reason) for s in skipped] == [
            (loose, "image outside any class folder (no label): move it into one")
        ]
    output = validate_folder(tmp_path / "flat", tmp_path)
    assert "1 file(s) skipped" in output and "0.png: image outside any class folder" in output


def test_the_counts_leave_out_the_files_that_did_not_decode(tmp_path: Path) -> None:
    """validate's table says what is used: a file listed as skipped is not counted too."""
    for name in ("a", "b"):
        write_images(tmp_path / "data" / name, 12)
    for k in range(3):
        (tmp_path / "data" / "a" / f"broken{k}.png").write_bytes(b"\x89PNG not really %d" % k)
    dataset = load_dataset(data_spec(tmp_path / "data", channels=3))
    assert sum(sum(c) for c in dataset.counts().values()) == 27  # before decoding: all listed
    arrays = dataset.arrays(Decoding(image_size=8, channels=3, resize="squash"))
    used = {name: len(part) for name, part in arrays.items()}
    counted = {name: sum(per_class) for name, per_class in dataset.counts().items()}
    assert counted == used and sum(used.values()) == 24
    output = validate_folder(tmp_path / "data", tmp_path)
    assert "3 file(s) skipped" in output
    total = next(line for line in output.splitlines() if "total" in line)
    assert [int(n) for n in re.findall(r"\d+", total)] == list(counted.values())
