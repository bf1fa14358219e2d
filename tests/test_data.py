"""Data discovery, splitting and preprocessing on small generated folder trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from automl_clf.data import Decoding, load_dataset
from automl_clf.data.augment import transform_list
from automl_clf.data.batches import TrainBatches, eval_batches
from automl_clf.data.discover import discover
from automl_clf.data.preprocess import build_preprocessing
from automl_clf.errors import DataError
from automl_clf.spec import parse_spec
from automl_clf.spec.config import AugmentConfig, DataConfig
from automl_clf.spec.models import DataSpec

NO_MIX = {"magnitude": 1.0, "transforms": None, "mixup": 0.0, "mixup_alpha": None,
          "cutmix": 0.0, "cutmix_alpha": None}  # fmt: skip


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
    assert reasons == {".DS_Store": "hidden file", "notes.txt": "not an image file (.txt)",
                       "empty.png": "empty file"}  # fmt: skip


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
    assert any("cannot decode" in s.reason and s.path.name == "zz_truncated.png"
               for s in dataset.skipped)  # fmt: skip


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
    pre = build_preprocessing(config, "cnn", ((0.5,) * 3, (0.25,) * 3))
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
