"""`best --export` and `predict`: the export contract and the predict round trip."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import automl_clf
from automl_clf.cli import app
from tests.conftest import tiny_spec, write_spec

runner = CliRunner()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, digits_root: Path) -> Path:
    folder = tmp_path_factory.mktemp("export")
    spec = write_spec(folder / "spec.yaml", tiny_spec(digits_root, folder, study={"n_trials": 2}))
    assert runner.invoke(app, ["search", str(spec)]).exit_code == 0
    result = runner.invoke(app, ["best", str(spec), "--export", str(folder / "model")])
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output
    return folder / "model"


def read_test_predictions(export: Path) -> list[dict[str, str]]:
    with (export / "report" / "test_predictions.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_export_directory_contract(exported: Path) -> None:
    for name in (
        "model.safetensors",
        "model.json",
        "report/metrics.json",
        "report/confusion_matrix.png",
        "report/report.md",
    ):
        assert (exported / name).is_file(), name
    manifest = json.loads((exported / "model.json").read_text())
    assert manifest["classes"] == ["0", "1", "7"]
    assert manifest["preprocessing"]["decoding"]["image_size"] == 8
    assert "torch" in manifest["versions"]
    metrics = json.loads((exported / "report" / "metrics.json").read_text())
    for key in (
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "classes",
        "confusion_matrix",
        "per_class",
    ):
        assert key in metrics
    matrix = np.asarray(metrics["confusion_matrix"])
    assert matrix.shape == (3, 3)
    assert matrix.sum() == metrics["n_images"] == len(read_test_predictions(exported))
    assert np.trace(matrix) / matrix.sum() == pytest.approx(metrics["accuracy"])
    assert set(metrics["per_class"]["7"]) == {"precision", "recall", "f1", "support"}


def test_predict_reproduces_the_test_predictions(exported: Path) -> None:
    rows = read_test_predictions(exported)
    paths = [row["path"] for row in rows]
    result = runner.invoke(app, ["predict", str(exported), *paths])
    assert result.exit_code == 0, result.output
    predicted = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [p["path"] for p in predicted] == paths
    for expected, got in zip(rows, predicted, strict=True):
        assert got["predicted"] == expected["predicted"]
        assert float(got["probability"]) == pytest.approx(float(expected["probability"]), abs=1e-5)
    metrics = json.loads((exported / "report" / "metrics.json").read_text())
    classes = metrics["classes"]
    matrix = np.zeros((3, 3), dtype=int)
    for expected, got in zip(rows, predicted, strict=True):
        matrix[classes.index(expected["true"]), classes.index(got["predicted"])] += 1
    assert matrix.tolist() == metrics["confusion_matrix"]


def test_python_api_matches_the_cli(exported: Path) -> None:
    rows = read_test_predictions(exported)[:10]
    predictor = automl_clf.load(exported)
    assert predictor.classes_ == ["0", "1", "7"]
    assert predictor.predict([r["path"] for r in rows]) == [r["predicted"] for r in rows]
    probabilities = predictor.predict_proba([r["path"] for r in rows])
    assert probabilities.shape == (10, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0)


def test_predict_walks_folders_and_reports_bad_files(exported: Path, tmp_path: Path) -> None:
    rows = read_test_predictions(exported)[:3]
    folder = tmp_path / "inbox" / "nested"
    folder.mkdir(parents=True)
    for i, row in enumerate(rows):
        shutil.copy(row["path"], folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    result = runner.invoke(
        app,
        ["predict", str(exported), str(tmp_path / "inbox"), "--format", "json", "--top-k", "2"],
    )
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert len(records) == 4
    broken = next(r for r in records if r["path"].endswith("broken.png"))
    assert broken["predicted"] is None and "cannot read image" in broken["error"]
    good = [r for r in records if r["error"] is None]
    assert [r["predicted"] for r in good] == [row["predicted"] for row in rows]
    assert all(len(r["top_k"]) == 2 for r in good)


def test_predict_refuses_a_folder_that_is_not_an_export(tmp_path: Path) -> None:
    result = runner.invoke(app, ["predict", str(tmp_path), str(tmp_path)])
    assert result.exit_code == 2
    assert "is not an autoclf export" in result.output


def test_best_without_a_study_says_how_to_make_one(spec_file: Path) -> None:
    result = runner.invoke(app, ["best", str(spec_file)])
    assert result.exit_code == 1
    assert "run `autoclf search SPEC` first" in result.output
