"""`autoclf visualize`: the first convolution's filters and the feature maps of each stage, for
the plain CNN (forward hooks) and timm backbones (timm's feature extraction)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from typer.testing import CliRunner

from automl_clf.cli import app
from automl_clf.data.preprocess import Decoding, Preprocessing
from automl_clf.final.folder import check_replaceable
from automl_clf.models.stages import feature_maps, first_conv
from automl_clf.report.network import write_network_figures
from tests.conftest import Exported

runner = CliRunner()


def _a_test_image(exported: Exported) -> Path:
    with (exported.folder / "report" / "test_predictions.csv").open() as handle:
        return Path(next(csv.DictReader(handle))["path"])


def _is_png(path: Path) -> bool:
    with Image.open(path) as image:
        return image.format == "PNG" and min(image.size) > 50


def test_visualize_writes_filters_and_a_map_per_cnn_stage(
    exported: Exported, tmp_path: Path
) -> None:
    out = tmp_path / "inside"
    image = _a_test_image(exported)
    result = runner.invoke(app, ["visualize", str(exported.folder), str(image), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "predicted" in result.output
    written = sorted(p.name for p in out.iterdir())
    # the tiny spec's CNN has one block, so one max-pool: one stage
    assert written == ["filters.png", "stage_1_features_3.png"], written
    assert all(_is_png(out / name) for name in written)


def test_visualize_defaults_to_a_folder_outside_the_export(
    exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    image = _a_test_image(exported)
    result = runner.invoke(app, ["visualize", str(exported.folder), str(image)])
    assert result.exit_code == 0, result.output
    written = Path("visualize") / image.stem / "filters.png"
    assert (tmp_path / written).is_file()
    assert f"wrote {written}" in result.output
    assert not (exported.folder / "visualize").exists()
    check_replaceable(exported.folder)  # still exactly what the export wrote


def test_a_name_made_from_the_image_never_leaves_the_visualize_folder(
    exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`...png` has the stem `..`: visualize/.. was the working folder itself."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(_a_test_image(exported), tmp_path / "...png")
    (tmp_path / "filters.png").write_bytes(b"the user's own")
    result = runner.invoke(app, ["visualize", str(exported.folder), "./...png"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "filters.png").read_bytes() == b"the user's own"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["...png", "filters.png", "visualize"]
    assert _is_png(tmp_path / "visualize" / "__" / "filters.png")
    assert "wrote visualize/__/filters.png" in result.output


def test_visualize_never_writes_into_the_export_it_reads(
    exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = shutil.copytree(exported.folder, tmp_path / "export")  # not the shared one
    shutil.rmtree(copy / "visualize", ignore_errors=True)  # another test's figures, if any
    image = _a_test_image(exported)
    result = runner.invoke(app, ["visualize", str(copy), str(image), "--out", str(copy / "r")])
    assert result.exit_code == 2, result.output
    assert f"--out {copy / 'r'} is inside the export folder {copy}" in result.output
    monkeypatch.chdir(copy)  # the default ./visualize/<image name> is then inside it
    result = runner.invoke(app, ["visualize", ".", str(image)])
    assert result.exit_code == 2, result.output
    assert "the default --out visualize/" in result.output and "e.g. --out" in result.output
    check_replaceable(copy)  # still exactly what the export wrote: a new export may replace it


def test_visualize_refuses_an_unreadable_image(exported: Exported, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    result = runner.invoke(app, ["visualize", str(exported.folder), str(broken)])
    assert result.exit_code == 2
    assert f"cannot read image {broken}" in result.output


@pytest.mark.parametrize("backbone", ["test_resnet", "test_efficientnet", "test_vit"])
def test_timm_backbones_show_every_stage(backbone: str, tmp_path: Path) -> None:
    model = timm.create_model(backbone, pretrained=False, num_classes=3, in_chans=1).eval()
    preprocessing = Preprocessing(
        decoding=Decoding(image_size=16, channels=1, resize="squash"), mean=(0.5,), std=(0.25,)
    )
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 1), dtype=np.uint8)
    stages = feature_maps(model, preprocessing.to_tensor(pixels[None]))
    assert [s.name for s in stages] == [info["module"] for info in model.feature_info]
    assert all(s.maps.ndim == 3 for s in stages)
    conv = first_conv(model)
    assert conv is not None and conv.in_channels == 1
    if backbone != "test_resnet":
        return  # drawing is the same code for every model; one is enough (and plots are slow)
    figures = write_network_figures(model, preprocessing, ["a", "b", "c"], pixels, tmp_path)
    assert figures.predicted in ("a", "b", "c") and not figures.notes
    assert len(figures.files) == 1 + len(stages)
    assert all(_is_png(path) for path in figures.files)


def test_cnn_stages_come_from_forward_hooks_at_each_pool() -> None:
    from automl_clf.models.cnn import PlainCNN
    from automl_clf.spec.config import CNNConfig

    cfg = CNNConfig(
        filters=(4, 8, 16),
        kernel_size=3,
        convs_per_block=2,
        batch_norm=True,
        global_pool=True,
        fc_width=0,
    )
    model = PlainCNN(cfg, in_chans=3, n_classes=2, image_size=8, dropout=0.0)
    stages = feature_maps(model, torch.rand(1, 3, 8, 8))
    assert [tuple(s.maps.shape) for s in stages] == [(4, 4, 4), (8, 2, 2), (16, 1, 1)]
    assert all(s.maps.min() >= 0 for s in stages)  # after ReLU and max-pool
