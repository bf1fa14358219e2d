"""`autoclf init DATA`: a commented spec chosen from the folder, which validates and searches as
written; never over a file the user has; and `validate` of a folder pointing at it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from automl_clf.cli import app
from automl_clf.errors import DataError, SpecError
from automl_clf.scaffold import image_size, init_spec
from automl_clf.spec.load import load_spec
from automl_clf.versions import SPEC

runner = CliRunner()


def one_line(output: str) -> str:
    return " ".join(output.split())


def write_images(root: Path, counts: dict[str, int], size: tuple[int, int], mode: str) -> Path:
    """`root/<class>/<i>.png`, random pixels of `size` (width, height) in Pillow `mode`."""
    rng = np.random.default_rng(0)
    channels = 3 if mode == "RGB" else 1
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
            Image.fromarray(pixels.squeeze(), mode).save(root / name / f"{i}.png")
    return root


@pytest.mark.slow
def test_init_writes_a_spec_that_validates_and_a_search_runs(
    tmp_path: Path, digits_root: Path
) -> None:
    spec = tmp_path / "digits.yaml"
    made = runner.invoke(app, ["init", str(digits_root), "-o", str(spec)])
    assert made.exit_code == 0, made.output
    assert f"next: autoclf validate {spec}" in one_line(made.output)
    checked = runner.invoke(app, ["validate", str(spec)])
    assert checked.exit_code == 0, checked.output
    searched = runner.invoke(app, ["search", str(spec), "--n-trials", "1"])
    assert searched.exit_code == 0, searched.output
    assert "1 complete" in searched.output


def test_the_spec_explains_its_choices_and_points_at_the_data_relatively(
    tmp_path: Path, digits_root: Path
) -> None:
    """8 px grayscale digits: 16 px (the floor), one channel, the plain CNN only (a timm
    backbone would see 1 px), a short budget's TPE start-up, and a comment on each choice."""
    out = tmp_path / "specs" / "digits.yaml"
    init_spec(digits_root, out, time="10m")
    text = out.read_text()
    raw = yaml.safe_load(text)
    root = Path(raw["data"]["root"])
    assert not root.is_absolute() and (out.parent / root).resolve() == digits_root.resolve()
    assert (raw["data"]["image_size"], raw["data"]["channels"]) == (16, 1)
    assert raw["model"]["backbone"] == "cnn"
    assert raw["study"]["budget"] == "10m" and raw["final"]["ensemble"] == 3
    assert raw["study"]["sampler"] == {"kind": "tpe", "n_startup_trials": 5}
    assert "median short side is 8 px; at least 16" in one_line(text)
    assert "every image read (90) is grayscale" in text
    assert "`autoclf run` says when every trial was random" in one_line(text)
    assert load_spec(out).study.name == "digits"
    assert raw["version"] == SPEC.version  # so a later autoclf knows which migrations it needs


def test_larger_imbalanced_colour_images_get_timm_backbones_and_class_weights(
    tmp_path: Path,
) -> None:
    root = write_images(tmp_path / "photos", {"a": 24, "b": 6, "c": 6}, (80, 64), "RGB")
    (root / "a" / "notes.txt").write_text("not an image")
    result = init_spec(root, tmp_path / "photos.yaml", time="2h")
    raw = yaml.safe_load(result.path.read_text())
    assert (raw["data"]["image_size"], raw["data"]["channels"]) == (64, 3)
    assert raw["model"]["backbone"] == {"choices": ["cnn", "resnet18", "mobilenetv3_small_100"]}
    assert raw["study"]["objective"] == "macro_f1"
    assert raw["train"]["class_weighting"] == "balanced"
    assert "sampler" not in raw["study"]  # a long budget: TPE's own start-up
    assert "# pretrained: true" in result.path.read_text()  # offered, never assumed
    assert any("imbalanced" in note for note in result.notes)
    assert any("not an image file" in note for note in result.notes)
    checked = runner.invoke(app, ["validate", str(result.path)])  # builds both timm backbones
    assert checked.exit_code == 0, checked.output


@pytest.mark.parametrize(
    ("short_side", "budget_s", "expected"),
    [
        (8, 900, 16),
        (28, 900, 32),
        (32, 900, 32),
        (100, 900, 96),
        (500, 900, 128),
        (500, 7200, 224),
    ],
)
def test_image_size_is_near_the_median_short_side_within_the_budgets_cap(
    short_side: float, budget_s: float, expected: int
) -> None:
    assert image_size(short_side, budget_s)[0] == expected


def test_a_presplit_folder_keeps_its_split(tmp_path: Path) -> None:
    for split in ("train", "val", "test"):
        write_images(tmp_path / "data" / split, {"x": 3, "y": 3}, (20, 20), "L")
    result = init_spec(tmp_path / "data", tmp_path / "s.yaml")
    raw = yaml.safe_load(result.path.read_text())
    assert "split" not in raw["data"]
    assert "val/ and test/ folders are used as given" in result.path.read_text()
    assert load_spec(result.path).data.image_size == 24


def test_a_manifest_becomes_data_manifest(tmp_path: Path) -> None:
    root = write_images(tmp_path / "imgs", {"x": 12, "y": 12}, (16, 16), "L")
    manifest = tmp_path / "labels.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows([(p.relative_to(tmp_path), p.parent.name) for p in root.rglob("*.png")])
    result = init_spec(manifest, tmp_path / "s.yaml")
    raw = yaml.safe_load(result.path.read_text())
    assert raw["data"]["manifest"] == "labels.csv" and "root" not in raw["data"]
    assert load_spec(result.path).data.manifest == manifest


def test_small_classes_get_larger_held_out_shares(tmp_path: Path) -> None:
    """3 classes of 4: a 15% test split (2 images) cannot hold all three."""
    root = write_images(tmp_path / "few", {"x": 4, "y": 4, "z": 4}, (16, 16), "L")
    raw = yaml.safe_load(init_spec(root, tmp_path / "s.yaml").path.read_text())
    assert raw["data"]["split"]["val"] > 0.15


def test_too_few_images_to_split_is_one_data_error(tmp_path: Path) -> None:
    root = write_images(tmp_path / "few", {"x": 2, "y": 2}, (16, 16), "L")
    with pytest.raises(DataError, match="too few images"):
        init_spec(root, tmp_path / "s.yaml")
    assert not (tmp_path / "s.yaml").exists()


def test_init_never_replaces_a_file_without_force(tmp_path: Path, digits_root: Path) -> None:
    spec = tmp_path / "mine.yaml"
    spec.write_text("my own spec\n")
    refused = runner.invoke(app, ["init", str(digits_root), "-o", str(spec)])
    assert refused.exit_code == 2
    assert "already exists; pass --force" in one_line(refused.output)
    assert spec.read_text() == "my own spec\n"
    replaced = runner.invoke(app, ["init", str(digits_root), "-o", str(spec), "--force"])
    assert replaced.exit_code == 0, replaced.output
    assert load_spec(spec).data.root == digits_root
    assert [p.name for p in tmp_path.iterdir()] == ["mine.yaml"]  # no partial file left


def test_init_refuses_a_spec_inside_the_data_folder(tmp_path: Path) -> None:
    """Its studies/ folder would become a class."""
    root = write_images(tmp_path / "data", {"x": 8, "y": 8}, (16, 16), "L")
    with pytest.raises(SpecError, match="inside the data folder"):
        init_spec(root, root / "spec.yaml")
    assert not (root / "spec.yaml").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--time", "soon"], "--time: a duration is a number of seconds"),
        (["nowhere"], "no such folder"),
    ],
)
def test_init_mistakes_are_one_line_and_exit_2(
    tmp_path: Path, digits_root: Path, args: list[str], expected: str
) -> None:
    data = [] if args[0] == "nowhere" else [str(digits_root)]
    args = [str(tmp_path / a) if a == "nowhere" else a for a in args]
    result = runner.invoke(app, ["init", *data, *args, "-o", str(tmp_path / "s.yaml")])
    assert result.exit_code == 2
    assert expected in one_line(result.output) and "Traceback" not in result.output


def test_validate_of_a_folder_suggests_init(digits_root: Path) -> None:
    result = runner.invoke(app, ["validate", str(digits_root)])
    assert result.exit_code == 2
    expected = "is a folder, not a spec file; to write a spec for the images in it: autoclf init"
    assert f"{expected} {digits_root}" in one_line(result.output)
