"""What each completed trial shows in optuna-dashboard: its per-class validation metrics as the
trial's note, and its validation confusion matrix as an artifact (an image the dashboard
displays).

The PNG is written to the trial's own folder (`<study.artifacts>/trial_<n>/`) and uploaded to
Optuna's `FileSystemArtifactStore` under `<study.artifacts>/optuna_artifacts/`, the store
`autoclf dashboard` serves. A figure that cannot be written does not fail the trial: the reason
is returned, for the trial's record (user attribute `report_error`, search/objective.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from automl_clf.report.markdown import markdown_table
from automl_clf.report.metrics import confusion, metrics_dict
from automl_clf.report.plots import draw_confusion_matrix, save_figure
from automl_clf.report.tables import Table, per_class_table
from automl_clf.train.metrics import EvalResult

ARTIFACT_STORE_DIR = "optuna_artifacts"
CONFUSION_FILE = "val_confusion_matrix.png"
NOTE_CLASSES = 30  # classes listed in a trial's note at most


def artifact_store(artifacts_root: Path) -> optuna.artifacts.FileSystemArtifactStore:
    """The study's Optuna artifact store, `<study.artifacts>/optuna_artifacts/` (created)."""
    folder = artifacts_root / ARTIFACT_STORE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return optuna.artifacts.FileSystemArtifactStore(folder)


def record_trial_report(
    trial: optuna.Trial, val: EvalResult, classes: list[str], artifacts_root: Path, folder: Path
) -> str | None:
    """Attach the note and the confusion-matrix artifact of a trial's best validation epoch;
    return why the figure could not be written, if it could not.

    Args:
        artifacts_root: the study's artifacts folder (`study.artifacts`), home of the store.
        folder: the trial's own folder under it (search/storage.py, `trial_artifacts_dir`).
    """
    from optuna_dashboard import save_note

    metrics = metrics_dict(val, classes)
    save_note(trial, trial_note(trial.number, metrics))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        figure = folder / CONFUSION_FILE
        matrix = draw_confusion_matrix(confusion(metrics), classes, split="validation, best epoch")
        save_figure(matrix, figure)
        optuna.artifacts.upload_artifact(
            artifact_store=artifact_store(artifacts_root),
            file_path=str(figure),
            study_or_trial=trial,
            mimetype="image/png",
        )
    except OSError as exc:
        return f"cannot write the trial's figure: {exc}"
    return None


def trial_note(number: int, metrics: dict[str, Any]) -> str:
    """The Markdown note: headline validation metrics and the per-class table (with many
    classes, the NOTE_CLASSES with the lowest F1: the ones worth a look)."""
    table = per_class_table(metrics)
    intro = "Per class:"
    if len(table.rows) > NOTE_CLASSES:
        intro = f"The {NOTE_CLASSES} classes with the lowest F1, of {len(table.rows)}:"
        rows = sorted(table.rows, key=lambda row: float(row[3]))[:NOTE_CLASSES]
        table = Table(table.header, rows)
    lines = [
        f"### Trial #{number}: validation split, best epoch",
        "",
        f"accuracy **{metrics['accuracy']:.4f}**, balanced accuracy "
        f"{metrics['balanced_accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f}, loss "
        f"{metrics['log_loss']:.4f} ({metrics['n_images']} images)",
        "",
        intro,
        "",
        *markdown_table(table),
    ]
    return "\n".join(lines)
