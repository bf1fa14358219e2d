"""Temperature scaling, `unsure` answers and the out-of-distribution flag (final/calibration.py),
through the real exports of tests/conftest.py: one model retrained on train over two seeds
(`exported`), and an as-searched ensemble of a CNN and a test_resnet (`ensembled`)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

import automl_clf
from automl_clf.cli import app
from automl_clf.data.preprocess import Decoding, Preprocessing
from automl_clf.final.calibration import (
    TEMPERATURE_RANGE,
    UNSURE,
    Calibrated,
    HeldOut,
    calibration_record,
    fit_temperature,
    log_loss,
    ood_record,
    rescale,
)
from automl_clf.final.ensemble import Ensemble
from automl_clf.final.formats import FORMATS
from automl_clf.final.predictor import Predictor
from automl_clf.report.final import export_calibration_change
from automl_clf.report.metrics import ece
from tests.conftest import Ensembled, Exported, write_spec

runner = CliRunner()


def sampled(sharpness: float, n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Predictions of a model `sharpness` times as sure as it should be (its logits multiplied
    by it), and labels drawn from the true probabilities."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, (n, 4))
    true = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(4, p=row) for row in true])
    return rescale(true, sharpness), labels


@pytest.mark.parametrize(("sharpness", "expected"), [(3.0, 3.0), (1 / 3, 1 / 3)])
def test_the_temperature_undoes_over_and_under_confidence(
    sharpness: float, expected: float
) -> None:
    probabilities, labels = sampled(sharpness)
    temperature, note = fit_temperature(probabilities, labels)
    assert note is None
    assert temperature == pytest.approx(expected, rel=0.1)  # T > 1 over-, T < 1 under-confident
    record = calibration_record(HeldOut(probabilities, labels, "synthetic"))
    assert record.val_log_loss_after < record.val_log_loss_before
    assert record.val_log_loss_after == pytest.approx(
        log_loss(rescale(probabilities, 1 / temperature), labels)
    )
    calibrated = rescale(probabilities, 1 / temperature)
    assert ece(calibrated, labels) < ece(probabilities, labels) / 2
    assert (calibrated.argmax(1) == probabilities.argmax(1)).all()  # the answers stay


def test_a_validation_split_without_mistakes_leaves_the_temperature_at_1() -> None:
    probabilities = np.array([[0.6, 0.4], [0.3, 0.7], [0.55, 0.45]])
    temperature, note = fit_temperature(probabilities, np.array([0, 1, 0]))
    assert temperature == 1.0 and note is not None and "no mistake" in note
    wrong = np.array([1, 1, 0])  # one mistake, made with little confidence: sharpen, bounded
    temperature, _ = fit_temperature(probabilities, wrong)
    assert TEMPERATURE_RANGE[0] <= temperature <= TEMPERATURE_RANGE[1]


def test_calibrating_an_ensemble_divides_its_log_mean_probability() -> None:
    torch.manual_seed(0)
    members = [torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)) for _ in range(2)]
    decoding = Decoding(image_size=4, channels=1, resize="squash")
    preprocessing = [Preprocessing(decoding=decoding, mean=(0.0,), std=(1.0,))] * 2
    ensemble = Ensemble(members, preprocessing, [0.75, 0.25]).eval()
    x = torch.rand(5, 1, 4, 4)
    with torch.no_grad():
        mean = ensemble(x).exp().numpy()
        served = Calibrated(ensemble, 2.5)(x).softmax(1).numpy()
    assert np.allclose(served, rescale(mean, 1 / 2.5), atol=1e-6)


def test_every_export_records_its_temperature_and_where_it_came_from(
    exported: Exported, ensembled: Ensembled
) -> None:
    single = json.loads((exported.folder / "model.json").read_text())["calibration"]
    assert single["fitted_on"] == "the validation split: the retrained weights' own predictions"
    many = json.loads((ensembled.folder / "model.json").read_text())["calibration"]
    assert many["fitted_on"].startswith("the validation split, the members' predictions mixed")
    assert many["fitted_on"].count("the exported weights' own predictions") == 3
    for record in (single, many):
        assert record["val_log_loss_after"] <= record["val_log_loss_before"]
        assert abs(np.log(record["temperature"])) > 0.05  # the tiny models are not calibrated


def formats_probabilities(folder: Path, images: torch.Tensor) -> dict[str, np.ndarray]:
    """Softmax of every extra format's output, each run by its own runtime."""
    out = {}
    for name, form in FORMATS.items():
        logits = torch.from_numpy(form.load(folder / form.file)(images))
        out[name] = logits.softmax(1).numpy()
    return out


@pytest.mark.parametrize("which", ["single", "ensemble"])
def test_calibrated_probabilities_agree_across_predictor_torchscript_and_onnx(
    which: str, exported: Exported, ensembled: Ensembled
) -> None:
    folder = exported.folder if which == "single" else ensembled.folder
    predictor = automl_clf.load(folder)
    paths = paths_of(folder)
    pixels = np.stack([predictor.load(path) for path in paths])
    images = predictor.manifest_.preprocessing.to_tensor(pixels)
    probabilities = predictor.predict_proba(paths)
    with torch.no_grad():
        raw = predictor.model_(images).softmax(1).numpy()
    assert not np.allclose(probabilities, raw, atol=1e-3)  # calibrated: not the raw softmax
    assert np.allclose(probabilities, rescale(raw, 1 / predictor.temperature_), atol=1e-5)
    for name, formatted in formats_probabilities(folder, images).items():
        assert np.allclose(formatted, probabilities, atol=1e-5), name
    recorded = read_rows(folder / "report" / "test_predictions.csv")  # the test, calibrated
    top = probabilities.max(1)
    assert np.allclose([float(r["probability"]) for r in recorded], top, atol=1e-5)


def test_unsure_appears_exactly_below_the_threshold_in_csv_and_json(exported: Exported) -> None:
    paths = paths_of(exported.folder)
    top = automl_clf.load(exported.folder).predict_proba(paths).max(1)
    threshold = float(np.median(top))
    below = top < threshold
    assert below.any() and not below.all()
    option = ["--min-confidence", str(threshold)]
    result = runner.invoke(app, ["predict", str(exported.folder), *paths, *option])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["path", "predicted", "probability", "top_class", "ood", "error"]
    for row, unsure in zip(rows, below, strict=True):
        assert (row["predicted"] == UNSURE) == unsure, row
        assert row["top_class"] in ("0", "1", "7")  # the most probable class, either way
        assert row["predicted"] in (UNSURE, row["top_class"])
    json_run = runner.invoke(
        app, ["predict", str(exported.folder), *paths, *option, "--format", "json"]
    )
    records = json.loads(json_run.stdout)
    assert [r["predicted"] == UNSURE for r in records] == below.tolist()
    assert [r["top_class"] for r in records] == [row["top_class"] for row in rows]
    assert all(isinstance(r["ood"], bool) and 0 <= r["ood_percentile"] <= 100 for r in records)
    # without the option: the export's default, none here, so always a class
    plain = runner.invoke(app, ["predict", str(exported.folder), *paths])
    assert UNSURE not in {row["predicted"] for row in csv.DictReader(io.StringIO(plain.stdout))}


def test_final_min_confidence_is_predicts_default(exported: Exported, tmp_path: Path) -> None:
    copy = shutil.copytree(exported.folder, tmp_path / "export")
    manifest = json.loads((copy / "model.json").read_text())
    manifest["min_confidence"] = 0.999
    (copy / "model.json").write_text(json.dumps(manifest))
    paths = paths_of(exported.folder)[:6]
    predictor = automl_clf.load(copy)
    probabilities = predictor.predict_proba(paths)
    classes = [predictor.classes_[i] for i in probabilities.argmax(1)]
    expected = [
        UNSURE if p < 0.999 else c for p, c in zip(probabilities.max(1), classes, strict=True)
    ]
    assert UNSURE in expected and predictor.predict(paths) == expected
    assert predictor.predict(paths, min_confidence=0.0) == classes
    result = runner.invoke(app, ["predict", str(copy), *paths, "--min-confidence", "0"])
    assert UNSURE not in result.stdout


def test_images_unlike_the_digits_are_flagged_more_often(exported: Exported) -> None:
    predictor = automl_clf.load(exported.folder)
    ood = predictor.manifest_.ood
    assert ood is not None and ood.percentile == 5.0 and ood.score == "max_softmax"
    pixels = np.stack([predictor.load(path) for path in paths_of(exported.folder)])
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (200, 8, 8, 1), dtype=np.uint8)
    flat = np.full((10, 8, 8, 1), 128, dtype=np.uint8)
    rates = {}
    for name, images in (("digits", pixels), ("noise", noise), ("flat", flat)):
        flags = predictor.ood_flags(predictor.predict_proba_pixels(images))
        assert flags is not None
        rates[name] = float(flags.mean())
    assert rates["noise"] > rates["digits"] + 0.2, rates
    assert rates["flat"] > rates["digits"] + 0.2, rates
    assert rates["digits"] <= 0.25, rates  # about the 5 % of the validation images, at 18 images


def test_the_ood_threshold_is_the_percentile_of_the_validation_scores() -> None:
    probabilities, labels = sampled(1.0, n=1000)
    calibration = calibration_record(HeldOut(probabilities, labels, "synthetic"))
    record = ood_record(HeldOut(probabilities, labels, "synthetic"), calibration, 5.0)
    assert record is not None
    scores = rescale(probabilities, 1 / calibration.temperature).max(1)
    assert record.flags(scores).mean() == pytest.approx(0.05, abs=0.002)
    assert record.percentile_of(np.array([0.0, 1.0])).tolist() == [0.0, 100.0]


def test_an_old_export_without_the_new_fields_predicts_exactly_as_before(
    exported: Exported, tmp_path: Path
) -> None:
    copy = shutil.copytree(exported.folder, tmp_path / "old")
    manifest = json.loads((copy / "model.json").read_text())
    for key in ("calibration", "ood", "min_confidence", "preprocessing_steps"):
        manifest.pop(key)
    (copy / "model.json").write_text(json.dumps(manifest))
    predictor = automl_clf.load(copy)
    assert predictor.temperature_ == 1.0 and predictor.served_ is predictor.model_
    paths = paths_of(exported.folder)
    pixels = np.stack([predictor.load(path) for path in paths])
    with torch.no_grad():  # what the Predictor computed before calibration existed
        before = torch.softmax(
            predictor.model_(predictor.manifest_.preprocessing.to_tensor(pixels)), 1
        )
    assert np.array_equal(predictor.predict_proba(paths), before.numpy())
    result = runner.invoke(app, ["predict", str(copy), *paths[:3]])
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["ood"] for row in rows] == ["", "", ""]  # no threshold recorded: no flag


def test_final_calibrate_none_exports_the_raw_probabilities(
    exported: Exported, tmp_path: Path
) -> None:
    raw = yaml.safe_load(exported.spec.read_text())
    raw["final"] = {"retrain": "never", "calibrate": "none", "min_confidence": 0.5}
    spec = automl_clf.load_spec(write_spec(exported.spec.with_name("none.yaml"), raw))
    report = automl_clf.export_best(spec, tmp_path / "none")
    manifest = json.loads((tmp_path / "none" / "model.json").read_text())
    assert manifest["calibration"] is None and manifest["min_confidence"] == 0.5
    assert (
        manifest["ood"]["fitted_on"]
        == "the validation split: the exported weights' own predictions"
    )
    metrics = json.loads((report / "metrics.json").read_text())
    assert "temperature_scaling" not in metrics
    assert metrics["coverage"]["min_confidence"]["threshold"] == 0.5
    change = export_calibration_change(tmp_path / "none")
    assert change.temperature == 1.0 and change.ece_before == change.ece_after
    assert "not calibrated" in (report / "report.md").read_text()


def test_the_report_shows_calibration_before_and_after(exported: Exported) -> None:
    report = exported.folder / "report"
    metrics = json.loads((report / "metrics.json").read_text())
    scaling = metrics["temperature_scaling"]
    assert (
        scaling["test_expected_calibration_error_after"] == metrics["expected_calibration_error"]
    )
    before, after = (
        scaling["test_expected_calibration_error_before"],
        scaling["test_expected_calibration_error_after"],
    )
    assert sum(b["n"] for b in scaling["calibration_before"]) == metrics["n_images"]
    change = export_calibration_change(exported.folder)
    assert (change.ece_before, change.ece_after) == (before, after)
    assert (
        change.temperature
        == json.loads((exported.folder / "model.json").read_text())["calibration"]["temperature"]
    )
    text = (report / "report.md").read_text()
    assert "## Calibration" in text and f"{before:.4f} before, {after:.4f} after" in text
    assert "](reliability_uncalibrated.png)" in text and "](accuracy_coverage.png)" in text
    page = (report / "index.html").read_text()
    assert "Before temperature scaling" in page and "before (T = 1)" in page
    coverage = metrics["coverage"]
    assert [row["coverage"] for row in coverage["at"]] == [0.8, 0.9, 0.95, 0.99]
    assert coverage["target_accuracy"] == 0.99
    assert "Target accuracy 0.99" in text or "No confidence threshold reaches" in text
    assert 0.0 <= metrics["ood"]["test_flagged"] <= 1.0


def test_the_preprocessing_steps_describe_what_predict_does(exported: Exported) -> None:
    manifest = json.loads((exported.folder / "model.json").read_text())
    steps = manifest["preprocessing_steps"]
    assert steps["resize"]["filter"] == "bilinear" and steps["resize"]["antialias"] is True
    assert steps["resize"]["method"] == manifest["preprocessing"]["decoding"]["resize"]
    assert steps["decode"]["mode"] == "L" and steps["decode"]["exif_transpose"] is True
    assert steps["tensor"]["mean"] == manifest["preprocessing"]["mean"]
    assert steps["tensor"]["layout"] == "NCHW" and steps["tensor"]["divide_by"] == 255.0


def test_the_readme_onnx_example_reproduces_the_predictor(
    exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's 'without autoclf' example, run as written: Pillow, NumPy and onnxruntime
    following model.json's preprocessing_steps give the Predictor's calibrated answers."""
    from tests.test_api import readme_examples

    code = readme_examples("What an export holds")[-1]
    assert "import automl_clf" not in code and "preprocessing_steps" in code
    (tmp_path / "exports").mkdir()
    shutil.copytree(exported.folder, tmp_path / "exports" / "digits")
    digit = tmp_path / "data" / "digits" / "3"
    digit.mkdir(parents=True)
    shutil.copy(paths_of(exported.folder)[0], digit / "0003.png")
    # a colour photo with an EXIF rotation and an alpha channel, as a user's file may be
    rgba = np.random.default_rng(0).integers(0, 256, (30, 20, 4), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90° clockwise
    Image.fromarray(rgba, "RGBA").save(tmp_path / "photo.png", exif=exif)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    paths = [*paths_of(exported.folder), str(tmp_path / "photo.png")]
    predictor: Predictor = automl_clf.load(tmp_path / "exports" / "digits")
    classify = namespace["classify"]
    got = classify(paths)  # type: ignore[operator]
    probabilities = predictor.predict_proba(paths)
    for (label, probability, ood), row, mine in zip(
        got, probabilities, predictor.predict_paths(paths), strict=True
    ):
        assert probability == pytest.approx(float(row.max()), abs=1e-5)
        assert label == mine.predicted and ood == mine.ood


def test_the_readme_says_what_model_json_holds() -> None:
    from tests.conftest import REPO

    text = (REPO / "README.md").read_text()
    for field in ("preprocessing_steps", "calibration", "min_confidence", "ood"):
        assert f"`{field}`" in text, field


def paths_of(folder: Path) -> list[str]:
    """The export's test images, in its test_predictions.csv order."""
    return [row["path"] for row in read_rows(folder / "report" / "test_predictions.csv")]


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))
