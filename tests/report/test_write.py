"""The export's report: metrics.json, every section of index.html and report.md, the figures, the
search summary, and the page as headless Chromium renders it."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import subprocess
from html import escape
from pathlib import Path

import numpy as np
import optuna
import pytest
from PIL import Image

from automl_clf.report.content import DataSummary, FinalSummary, ReportContent, SeedSummary
from automl_clf.report.html import SECTIONS
from automl_clf.report.metrics import (
    calibration_bins,
    expected_calibration_error,
    top_k_accuracy,
)
from automl_clf.report.search import MIN_IMPORTANCE_TRIALS, summarise_search
from automl_clf.report.write import FIGURES, write_report
from automl_clf.search.record import trial_state
from automl_clf.spec import load_spec
from automl_clf.train.metrics import summarise
from tests.conftest import Ensembled, Exported
from tests.report_helpers import CHROMIUM_NAMES, chromium, screenshot


@pytest.fixture
def report(exported: Exported) -> Path:
    return exported.folder / "report"


def test_top_k_accuracy_counts_the_true_class_among_the_k_best() -> None:
    probabilities = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]])
    labels = np.array([1, 1, 0])  # second best, best, worst
    assert top_k_accuracy(probabilities, labels) == {"1": 1 / 3, "2": 2 / 3}


def test_expected_calibration_error_is_the_weighted_gap() -> None:
    probabilities = np.array([[0.9, 0.1]] * 10)  # always 90 % sure…
    labels = np.array([0] * 6 + [1] * 4)  # …and right 60 % of the time
    bins = calibration_bins(probabilities, labels)
    assert sum(b["n"] for b in bins) == 10
    assert expected_calibration_error(bins) == pytest.approx(0.3)
    perfect = calibration_bins(np.eye(3), np.arange(3))
    assert expected_calibration_error(perfect) == 0.0


def test_metrics_json_extends_the_contract(report: Path) -> None:
    metrics = json.loads((report / "metrics.json").read_text())
    for key in (
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "log_loss",
        "classes",
        "confusion_matrix",
        "per_class",
        "top_k_accuracy",
        "expected_calibration_error",
        "calibration",
        "tta",
        "seeds",
    ):
        assert key in metrics, key
    assert metrics["top_k_accuracy"]["1"] == pytest.approx(metrics["accuracy"])
    assert set(metrics["top_k_accuracy"]) == {"1", "2"}  # 3 classes: top-3 is always right
    assert sum(b["n"] for b in metrics["calibration"]) == metrics["n_images"]
    assert 0.0 <= metrics["expected_calibration_error"] <= 1.0


def test_every_section_is_on_the_page_and_self_contained(report: Path) -> None:
    page = (report / "index.html").read_text()
    for key, _ in SECTIONS:
        assert f'<section id="{key}">' in page, key
    for text in (
        "Trials",
        "Optimisation history",
        "Parameter importances",
        "not shown below 20 complete trials",
        "PED-ANOVA",
        "learning curves",
        "Best vs runner-up",
        "Time:",
        "Retrain seeds",
        "with TTA",
        "latency",
        "max |Δ logit|",
        "precision",
        "Expected calibration error",
        "skipped",
    ):
        assert text.lower() in page.lower(), text
    metrics = json.loads((report / "metrics.json").read_text())
    if metrics["accuracy"] < 1.0:
        assert '<div class="gallery">' in page and "true " in page and " → " in page
    else:
        assert "No test image is misclassified" in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)
    assert "<script" not in page and "<link" not in page and "http" not in page


def test_figures_are_written_as_png(report: Path) -> None:
    metrics = json.loads((report / "metrics.json").read_text())
    # 3 trials: too few for importances; no label audit (that is tests/cli/test_audit.py)
    names = set(FIGURES.values()) - {"param_importances.png", "label_issues.png"}
    names.discard("near_duplicates.png")  # the digits hold none (tests/report/test_duplicates.py)
    if metrics["accuracy"] == 1.0:
        names -= {"mistakes.png", "mistakes_heatmaps.png"}
    if not (report / "augmented_images.png").exists():  # the exported trial augments nothing
        assert "trained without augmentation" in (report / "index.html").read_text()
        names.discard("augmented_images.png")
    for name in names:
        with Image.open(report / name) as image:
            assert image.format == "PNG" and min(image.size) > 100, name


def test_the_report_shows_where_the_model_looked(report: Path) -> None:
    metrics = json.loads((report / "metrics.json").read_text())
    names = ["examples_heatmaps.png"]
    names += ["mistakes_heatmaps.png"] if metrics["accuracy"] < 1.0 else []
    text = (report / "report.md").read_text()
    page = (report / "index.html").read_text()
    for name in names:
        with Image.open(report / name) as image:
            assert image.format == "PNG" and image.mode in ("RGB", "RGBA"), name
        assert f"]({name})" in text
    assert "<h3>Where the model looked</h3>" in page
    assert "Grad-CAM of the predicted class at <code>features.3</code>" in page  # the last block
    assert '<div class="gallery right">' in page  # one correct image per class
    gallery = page.split("<h3>Where the model looked</h3>")[1].split("</section>")[0]
    thumbnails = re.findall(r'src="data:image/png;base64,([^"]*)"', gallery)
    n_classes = len(metrics["classes"])
    assert n_classes <= len(thumbnails) <= n_classes + 16
    assert max(len(t) for t in thumbnails) * 3 / 4 < 4096  # each a few KB at most


def test_report_md_has_the_essentials(report: Path) -> None:
    text = (report / "report.md").read_text()
    for heading in (
        "## Test metrics",
        "## Per class",
        "## Confusion matrix",
        "## Most confident mistakes",
        "## Final model",
        "### Seeds",
        "### Formats",
        "## Training",
        "## Search",
        "### Parameter importances",
        "### Best vs runner-up",
        "## Data",
    ):
        assert heading in text, heading
    figures = ("confusion_matrix.png", "reliability.png", "learning_curves.png")
    for figure in (*figures, "optimization_history.png"):
        assert f"]({figure})" in text


def test_search_summary_reads_the_study(exported: Exported) -> None:
    spec = load_spec(exported.spec)
    assert spec.study.storage is not None and spec.study.name is not None
    study = optuna.load_study(study_name=spec.study.name, storage=spec.study.storage)
    summary = summarise_search(study)
    states = [trial_state(t) for t in study.trials]
    assert sum(summary.counts.values()) == len(states) == 3
    assert summary.counts == {s: states.count(s) for s in summary.counts}
    assert summary.best is not None and summary.best.number == study.best_trial.number
    values = [r.value for r in summary.ranked]
    assert values == sorted(values)  # best first: the tiny spec minimises val_loss
    assert summary.importances == {}  # 3 trials: too few to rank parameters
    assert f"below {MIN_IMPORTANCE_TRIALS} complete trials" in summary.importance_note
    pruned = [r for r in summary.trials if r.state == "pruned"]
    assert summary.pruned_epochs_saved == sum(3 - (r.epochs_run or 0) for r in pruned)


def test_the_page_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    browser = chromium()
    if browser is None:
        pytest.skip(
            "no Chromium found (tried " + ", ".join(CHROMIUM_NAMES) + "); .ci/run installs "
            "Debian's chromium package, or: apt-get install chromium"
        )
    shot = tmp_path / "report.png"
    page = (report / "index.html").as_uri()
    try:
        run = screenshot(browser, page, shot, (1280, 2400), tmp_path / "profile")
    except subprocess.TimeoutExpired:
        pytest.fail("headless Chromium did not finish a screenshot within 120 s")
    if run.returncode != 0 and not shot.exists():
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"Chromium at {browser} could not start (exit {run.returncode}): {last}")
    assert shot.is_file(), f"Chromium wrote no screenshot: {run.stderr[-500:]}"
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[:2] == (2400, 1280)
    header = pixels[:60].reshape(-1, 3).mean(axis=0)
    assert header.max() < 80  # the dark title bar is drawn: the style sheet applied
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500  # figures and text, not blank


HOSTILE_CLASSES = [
    "<img src=x onerror=alert(1)>",
    "*star* | ~~gone~~ & [link](http://x) `tick` $x$ _u_",
    "a$\\frac$b",  # bad TeX: matplotlib would fail on it as mathematics
]


def hostile_content() -> ReportContent:
    """A report whose every user string (class names, paths, params, reasons) is markup."""
    labels = np.array([0, 1, 2, 0, 1, 2])
    probabilities = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.7, 0.2, 0.1]] * 2)
    study = optuna.create_study()
    choice = optuna.distributions.CategoricalDistribution(["<b>p</b>", "q"])
    for value, param in ((0.5, "<b>p</b>"), (0.7, "q")):
        trial = optuna.trial.create_trial(
            params={"augment.policy": param},
            distributions={"augment.policy": choice},
            value=value,
        )
        study.add_trial(trial)
    failed = optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL, user_attrs={"fail_reason": "<script>x</script>"}
    )
    study.add_trial(failed)
    return ReportContent(
        title="<i>study</i>",
        classes=HOSTILE_CLASSES,
        data=DataSummary(
            root="/data/<b>root</b>",
            presplit=False,
            counts={"train": [4, 4, 4], "val": [1, 1, 1], "test": [2, 2, 2]},
            skipped=[("/data/<u>bad</u>.png", "cannot decode <em>it</em>")],
            fingerprint="0" * 64,
            n_files=21,
        ),
        search=summarise_search(study),
        final=FinalSummary(
            trial=0,
            objective="val_loss",
            objective_value=0.5,
            params={"augment.policy": "<b>p</b>"},
            config={"note": "<b>config</b>"},
            backbone="cnn",
            n_params=10,
            latency_ms=1.0,
            epochs=2,
            train_on="train",
            class_weighting="balanced",
            seed=0,
            seeds=[SeedSummary(0, None)],
            preprocessing={
                "decoding": {"image_size": 8, "channels": 1, "resize": "squash"},
                "mean": [0.5],
                "std": [0.25],
            },
            formats={"onnx": {"file": "model.onnx", "ok": False, "error": "<b>failed</b>"}},
        ),
        test=summarise(0.5, probabilities, labels),
        test_paths=[Path(f"/data/<s>{i}</s>.png") for i in range(6)],
        test_pixels=np.zeros((6, 8, 8, 1), dtype=np.uint8),
    )


@pytest.mark.filterwarnings("ignore:Tight layout not applied")  # long names on purpose
def test_user_strings_show_as_written_never_as_markup(tmp_path: Path) -> None:
    from markdown_it import MarkdownIt

    write_report(hostile_content(), tmp_path)  # the figures draw `$…$` as text
    pages = {
        "index.html": (tmp_path / "index.html").read_text(),
        "report.md": MarkdownIt("commonmark")
        .enable(["table", "strikethrough"])
        .render((tmp_path / "report.md").read_text()),
    }
    for name, page in pages.items():
        for tag in (
            "<img src=x",
            "<b>",
            "<i>",
            "<u>",
            "<s>",
            "<em>",
            "<script",
            "<del>",
            'http://x"',
        ):
            assert tag not in page, (name, tag)
        for text in (*HOSTILE_CLASSES, "/data/<b>root</b>", "<script>x</script>"):
            assert escape(text, quote=False) in page, (name, text)


def test_test_predictions_csv_neutralises_formulas_in_paths_and_class_names(
    tmp_path: Path,
) -> None:
    formulas = ['=HYPERLINK("http://x.test/"&A1,"click")', "-1+2", "@SUM(A1)"]
    content = dataclasses.replace(
        hostile_content(),
        classes=formulas,
        test_paths=[Path(f"+{i}.png") for i in range(6)],
    )
    write_report(content, tmp_path, figures=False)
    with (tmp_path / "test_predictions.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["path"] for row in rows] == [f"'+{i}.png" for i in range(6)]
    assert {row["true"] for row in rows} == {"'" + name for name in formulas}
    assert all(row["predicted"][0] == "'" and float(row["probability"]) > 0 for row in rows)


def test_figures_stop_when_the_time_runs_out_and_the_text_is_written_whatever(
    tmp_path: Path,
) -> None:
    """A time budget asked before each figure (drawing under load took 9 s where 4 were
    planned): the first ones are kept, the others named, the report's text always written."""
    asked: list[int] = []

    def time_left() -> bool:
        asked.append(1)
        return len(asked) <= 2

    left_out: list[str] = []
    drawn = write_report(hostile_content(), tmp_path, time_left=time_left, left_out=left_out)
    assert list(drawn) == ["confusion", "confusion_normalized"]
    assert left_out and len(left_out) == len(asked) - 2
    assert "reliability" in left_out and "confusion" not in left_out
    assert (tmp_path / "index.html").is_file() and (tmp_path / "report.md").is_file()
    assert not (tmp_path / "reliability.png").exists()
    everything = write_report(hostile_content(), tmp_path / "all")
    assert set(everything) == {"confusion", "confusion_normalized", *left_out}


def test_an_ensemble_is_reported_beside_its_best_member(ensembled: Ensembled) -> None:
    report = ensembled.folder / "report"
    metrics = json.loads((report / "metrics.json").read_text())
    members = metrics["ensemble"]["members"]
    assert len(members) == 3 and metrics["single"]["trial"] == members[0]
    assert set(metrics["single"]) == {
        "trial",
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "log_loss",
    }
    assert metrics["single"]["log_loss"] != pytest.approx(metrics["log_loss"])  # not the same
    header = (
        f"| metric | test (ensemble of 3) | trial #{members[0]} alone | test with TTA (hflip) |"
    )
    markdown = (report / "report.md").read_text()
    assert header in markdown and "### Ensemble members (best first)" in markdown
    for number in members:
        assert f"trial #{number}'s best epoch (not retrained)" in markdown
    page = (report / "index.html").read_text()
    for text in ("test (ensemble of 3)", f"trial #{members[0]} alone", "Ensemble members"):
        assert escape(text) in page, text
    # the heatmaps: the weighted mean of every member's, the test_resnet's included
    layers = re.findall(r"Grad-CAM of the predicted class at <code>([^<]*)</code>", page)
    assert len(layers) == 1 and layers[0].count("member ") == 3
    assert "layer1" in layers[0]  # the test_resnet's: its deepest stage of 2 × 2 at 8 px
    assert (report / "examples_heatmaps.png").is_file()
    printed = " ".join(ensembled.output.split())
    numbers = ", ".join(f"#{n}" for n in members)
    assert f"ensemble of 3 (trials {numbers}, mean of probabilities, not retrained): test" in (
        printed
    )
    assert f"trial #{members[0]} alone: test accuracy {metrics['single']['accuracy']:.4f}" in (
        printed
    )
