"""Write a report folder from a `ReportContent`:

metrics.json                   the test metrics (the export contract, see report/metrics.py)
test_predictions.csv           path, true, predicted, probability of each test image
confusion_matrix.png           counts (rows = true class)
confusion_matrix_normalized.png  each row's shares
reliability.png                calibration
learning_curves.png            loss and accuracy per epoch: the trial's, then its retrain's
augmented_images.png           training images before and after the augmentation (if any)
optimization_history.png       the search (when a study was given)
param_importances.png          (from report/search.py's MIN_IMPORTANCE_TRIALS complete trials)
mistakes.png                   the most confident mistakes (when there are any)
near_duplicates.png            clusters of near-duplicate images (when there are any)
report.md                      the essentials, for a terminal or a pull request
index.html                     everything, one self-contained page (images embedded)
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from automl_clf.report.content import ReportContent
from automl_clf.report.duplicates import draw_near_duplicates
from automl_clf.report.html import render_html
from automl_clf.report.markdown import render_markdown
from automl_clf.report.metrics import confusion
from automl_clf.report.plots import (
    draw_augmented,
    draw_confusion_matrix,
    draw_history,
    draw_image_grid,
    draw_importances,
    draw_learning_curves,
    draw_reliability,
    save_figure,
)

# figure key -> file name; the renderers show the figures present, in this order
FIGURES = {
    "history": "optimization_history.png",
    "importances": "param_importances.png",
    "confusion": "confusion_matrix.png",
    "confusion_normalized": "confusion_matrix_normalized.png",
    "reliability": "reliability.png",
    "curves": "learning_curves.png",
    "augmented": "augmented_images.png",
    "mistakes": "mistakes.png",
    "near_duplicates": "near_duplicates.png",
}


def write_report(content: ReportContent, folder: Path, *, figures: bool = True) -> dict[str, Path]:
    """Write every file of the module docstring into `folder`; returns the figures written.
    `figures=False` (a time budget had no room for them) writes the text and tables only."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(content.metrics, indent=2) + "\n")
    _write_predictions(content, folder / "test_predictions.csv")
    drawn = _draw_figures(content, folder) if figures else {}
    (folder / "report.md").write_text(render_markdown(content, drawn))
    (folder / "index.html").write_text(render_html(content, drawn), encoding="utf-8")
    return drawn


def _write_predictions(content: ReportContent, path: Path) -> None:
    classes = content.classes
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true", "predicted", "probability"])
        for file, label, row in zip(
            content.test_paths, content.test.labels, content.test.probabilities, strict=True
        ):
            best = int(row.argmax())
            writer.writerow([str(file), classes[label], classes[best], f"{row[best]:.6f}"])


def _draw_figures(content: ReportContent, folder: Path) -> dict[str, Path]:
    figures = {key: folder / name for key, name in FIGURES.items()}
    matrix = confusion(content.metrics)
    save_figure(draw_confusion_matrix(matrix, content.classes), figures["confusion"])
    normalized = draw_confusion_matrix(matrix, content.classes, normalized=True)
    save_figure(normalized, figures["confusion_normalized"])
    metrics = content.metrics
    reliability = draw_reliability(metrics["calibration"], metrics["expected_calibration_error"])
    save_figure(reliability, figures["reliability"])
    if any(curve.n_epochs for curve in content.curves):
        save_figure(draw_learning_curves(content.curves), figures["curves"])
    if content.augmented is not None:
        save_figure(draw_augmented(content.augmented), figures["augmented"])
    search = content.search
    if search is not None and search.trials:
        save_figure(draw_history(search), figures["history"])
    if search is not None and search.importances:
        importances = draw_importances(search.importances, search.n_complete)
        save_figure(importances, figures["importances"])
    mistakes = content.mistakes()
    if mistakes:
        grid = draw_image_grid(
            [content.image(i) for i in mistakes],
            [content.mistake_caption(i) for i in mistakes],
            title="Most confident mistakes (test split)",
        )
        save_figure(grid, figures["mistakes"])
    if content.near_duplicates is not None and content.near_duplicates.shown:
        save_figure(draw_near_duplicates(content.near_duplicates), figures["near_duplicates"])
    return {key: path for key, path in figures.items() if path.is_file()}
