"""Write a report folder from a `ReportContent`:

metrics.json                   the test metrics (the export contract, see report/metrics.py)
test_predictions.csv           path, true, predicted, probability of each test image
confusion_matrix.png           counts (rows = true class)
confusion_matrix_normalized.png  each row's shares
reliability.png                calibration
optimization_history.png       the search (when a study was given)
param_importances.png          (when they could be computed)
mistakes.png                   the most confident mistakes (when there are any)
report.md                      the essentials, for a terminal or a pull request
index.html                     everything, one self-contained page (images embedded)
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from automl_clf.report.content import ReportContent
from automl_clf.report.html import render_html
from automl_clf.report.markdown import render_markdown
from automl_clf.report.metrics import confusion
from automl_clf.report.plots import (
    plot_confusion_matrix,
    plot_history,
    plot_image_grid,
    plot_importances,
    plot_reliability,
)

# figure key -> file name; the renderers show the figures present, in this order
FIGURES = {
    "history": "optimization_history.png",
    "importances": "param_importances.png",
    "confusion": "confusion_matrix.png",
    "confusion_normalized": "confusion_matrix_normalized.png",
    "reliability": "reliability.png",
    "mistakes": "mistakes.png",
}


def write_report(content: ReportContent, folder: Path) -> dict[str, Path]:
    """Write every file of the module docstring into `folder`; returns the figures written."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(content.metrics, indent=2) + "\n")
    _write_predictions(content, folder / "test_predictions.csv")
    figures = _draw_figures(content, folder)
    (folder / "report.md").write_text(render_markdown(content, figures))
    (folder / "index.html").write_text(render_html(content, figures), encoding="utf-8")
    return figures


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
    plot_confusion_matrix(matrix, content.classes, figures["confusion"])
    plot_confusion_matrix(
        matrix, content.classes, figures["confusion_normalized"], normalized=True
    )
    plot_reliability(
        content.metrics["calibration"],
        content.metrics["expected_calibration_error"],
        figures["reliability"],
    )
    search = content.search
    if search is not None and search.trials:
        plot_history(search, figures["history"])
    if search is not None and search.importances:
        plot_importances(search.importances, figures["importances"])
    mistakes = content.mistakes()
    if mistakes:
        plot_image_grid(
            [content.image(i) for i in mistakes],
            [content.mistake_caption(i) for i in mistakes],
            figures["mistakes"],
            title="Most confident mistakes (test split)",
        )
    return {key: path for key, path in figures.items() if path.is_file()}
