"""Write an export directory: the model, its preprocessing, and the test report.

    DIR/model.safetensors         the weights (no pickle)
    DIR/model.json                classes, architecture, preprocessing, trial config, versions
    DIR/report/metrics.json       test metrics (see report/metrics.py)
    DIR/report/test_predictions.csv   path, true, predicted, probability for each test image
    DIR/report/confusion_matrix.png
    DIR/report/report.md

The directory is built beside DIR and moved into place at the end, so an interrupted export
never leaves a half-written one behind, and an existing export is only replaced once the new
one is complete.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

from safetensors.torch import save_model

from automl_clf.errors import ExportError
from automl_clf.final.manifest import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    MODEL_FILE,
    REPORT_DIR,
    ExportManifest,
    library_versions,
)
from automl_clf.final.retrain import FinalResult
from automl_clf.report import metrics_dict, plot_confusion_matrix, render_markdown
from automl_clf.report.metrics import confusion


def write_export(result: FinalResult, out_dir: Path, *, study_name: str, objective: str) -> Path:
    """Write `out_dir` (replacing an earlier autoclf export there); returns the report folder."""
    out_dir = out_dir.resolve()
    is_export = (out_dir / MANIFEST_FILE).is_file()
    if out_dir.exists() and not is_export and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(
            f"{out_dir} exists and is not an autoclf export; choose a new or empty folder"
        )
    staging = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / REPORT_DIR).mkdir(parents=True)
    try:
        _write(result, staging, study_name=study_name, objective=objective)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir / REPORT_DIR


def _write(result: FinalResult, folder: Path, *, study_name: str, objective: str) -> None:
    model = result.trained.fit.model.cpu().eval()
    save_model(model, str(folder / MODEL_FILE))
    pre = result.trained.preprocessing
    classes = result.dataset.classes
    manifest = ExportManifest(
        format_version=FORMAT_VERSION,
        classes=classes,
        architecture=result.config.model.backbone,
        n_params=result.trained.n_params,
        input_shape=(pre.decoding.channels, pre.decoding.image_size, pre.decoding.image_size),
        preprocessing=pre,
        config=result.config,
        study=study_name,
        trial=result.trial.number,
        trained_epochs=result.epochs,
        train_on=result.train_on,
        versions=library_versions(),
    )
    (folder / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")

    report = folder / REPORT_DIR
    metrics = metrics_dict(result.test, classes)
    metrics["predictions_file"] = "test_predictions.csv"
    (report / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    with (report / "test_predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true", "predicted", "probability"])
        probabilities = result.test.probabilities
        for path, label, row in zip(
            result.test_data.paths, result.test.labels, probabilities, strict=True
        ):
            best = int(row.argmax())
            writer.writerow([str(path), classes[label], classes[best], f"{row[best]:.6f}"])
    plot_confusion_matrix(confusion(metrics), classes, report / "confusion_matrix.png")
    counts = result.dataset.counts()
    summary = {
        "study": study_name,
        "trial": result.trial.number,
        "objective": objective,
        "objective_value": result.trial.values[0],  # the first objective of several
        "train_on": result.train_on,
        "epochs": result.epochs,
        "params": result.trial.params,
        "backbone": result.config.model.backbone,
        "n_params": result.trained.n_params,
        "counts": ", ".join(f"{name} {sum(c)}" for name, c in counts.items()),
    }
    (report / "report.md").write_text(render_markdown(metrics, summary))
