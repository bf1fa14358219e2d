"""Write a report folder from a `ReportContent`:

metrics.json                   the test metrics (the export contract, see report/metrics.py)
test_predictions.csv           path, true, predicted, probability of each test image (a
                               cell a spreadsheet would run gets a leading ': outputs.py)
confusion_matrix.png           counts (rows = true class)
confusion_matrix_normalized.png  each row's shares
reliability.png                calibration, as exported (after temperature scaling)
reliability_uncalibrated.png   calibration before temperature scaling (when it was applied)
accuracy_coverage.png          accuracy of the surest share of the test images answered
learning_curves.png            loss and accuracy per epoch: the trial's, then its retrain's
augmented_images.png           training images before and after the augmentation (if any)
optimization_history.png       the search (when a study was given)
param_importances.png          (from report/search.py's MIN_IMPORTANCE_TRIALS complete trials)
mistakes.png                   the most confident mistakes (when there are any)
mistakes_heatmaps.png          the same, under heatmaps of where the model looked (Grad-CAM)
examples_heatmaps.png          one correct test image per class, under its heatmap
label_issues.csv, label_issues.png   the label audit's findings (`run` with
                               final.audit_labels: true; report/audit.py)
near_duplicates.png            clusters of near-duplicate images (when there are any)
report.md                      the essentials, for a terminal or a pull request
index.html                     everything, one self-contained page (images embedded)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl_clf.outputs import csv_writer
from automl_clf.report.audit import ISSUES_CSV, ISSUES_FIGURE, draw_issues, write_issues_csv
from automl_clf.report.content import N_EXAMPLES, ReportContent
from automl_clf.report.duplicates import draw_near_duplicates
from automl_clf.report.html import render_audit_html, render_html
from automl_clf.report.markdown import render_audit_markdown, render_markdown
from automl_clf.report.metrics import confusion
from automl_clf.report.plots import (
    draw_accuracy_coverage,
    draw_augmented,
    draw_confusion_matrix,
    draw_history,
    draw_image_grid,
    draw_importances,
    draw_learning_curves,
    draw_reliability,
    overlay_heatmap,
    save_figure,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from automl_clf.final.audit import AuditResult

# figure key -> file name; the renderers show the figures present, in this order
FIGURES = {
    "history": "optimization_history.png",
    "importances": "param_importances.png",
    "confusion": "confusion_matrix.png",
    "confusion_normalized": "confusion_matrix_normalized.png",
    "reliability_before": "reliability_uncalibrated.png",
    "reliability": "reliability.png",
    "coverage": "accuracy_coverage.png",
    "curves": "learning_curves.png",
    "augmented": "augmented_images.png",
    "mistakes": "mistakes.png",
    "mistakes_heatmaps": "mistakes_heatmaps.png",
    "examples_heatmaps": "examples_heatmaps.png",
    "label_issues": ISSUES_FIGURE,
    "near_duplicates": "near_duplicates.png",
}


def write_report(
    content: ReportContent,
    folder: Path,
    *,
    figures: bool = True,
    time_left: Callable[[], bool] | None = None,
    left_out: list[str] | None = None,
) -> dict[str, Path]:
    """Write every file of the module docstring into `folder`; returns the figures written.
    `figures=False` (a time budget had no room for them) writes the text and tables only.
    `time_left`: asked before each figure (a time budget's deadline); the figures it stops
    are named in `left_out`, and the text is written whatever it says."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(content.metrics, indent=2) + "\n")
    _write_predictions(content, folder / "test_predictions.csv")
    if content.label_issues is not None:
        write_issues_csv(content.label_issues, folder / ISSUES_CSV)
    drawn = {}
    if figures:
        paths = {key: folder / name for key, name in FIGURES.items()}
        for key, draw in _figure_makers(content):
            if time_left is not None and not time_left():
                if left_out is not None:
                    left_out.append(key)
                continue
            figure = draw()
            if figure is not None:
                save_figure(figure, paths[key])
        drawn = {key: path for key, path in paths.items() if path.is_file()}
    (folder / "report.md").write_text(render_markdown(content, drawn))
    (folder / "index.html").write_text(render_html(content, drawn), encoding="utf-8")
    return drawn


def _write_predictions(content: ReportContent, path: Path) -> None:
    classes = content.classes
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv_writer(handle)
        writer.writerow(["path", "true", "predicted", "probability"])
        for file, label, row in zip(
            content.test_paths, content.test.labels, content.test.probabilities, strict=True
        ):
            best = int(row.argmax())
            writer.writerow([str(file), classes[label], classes[best], f"{row[best]:.6f}"])


FigureMaker = Callable[[], "Figure | None"]


def _figure_makers(content: ReportContent) -> Iterator[tuple[str, FigureMaker]]:
    """Each figure the report shows, as (its `FIGURES` key, what draws it), in the order they
    are drawn: a time budget that runs out while drawing keeps the first ones."""
    matrix = confusion(content.metrics)
    yield "confusion", lambda: draw_confusion_matrix(matrix, content.classes)
    yield (
        "confusion_normalized",
        lambda: draw_confusion_matrix(matrix, content.classes, normalized=True),
    )
    metrics = content.metrics
    scaling = metrics.get("temperature_scaling")
    after = "Reliability diagram"
    if scaling is not None:
        yield (
            "reliability_before",
            lambda: draw_reliability(
                scaling["calibration_before"],
                scaling["test_expected_calibration_error_before"],
                title="Before temperature scaling",
            ),
        )
        after = f"After temperature scaling, T = {scaling['temperature']:.3g}"
    yield (
        "reliability",
        lambda: draw_reliability(
            metrics["calibration"], metrics["expected_calibration_error"], title=after
        ),
    )
    coverage = metrics["coverage"]
    reached = coverage["target"]
    yield (
        "coverage",
        lambda: draw_accuracy_coverage(
            coverage["curve"]["coverage"],
            coverage["curve"]["accuracy"],
            coverage["target_accuracy"],
            None if reached is None else (reached["coverage"], reached["accuracy"]),
        ),
    )
    if any(curve.n_epochs for curve in content.curves):
        yield "curves", lambda: draw_learning_curves(content.curves)
    augmented = content.augmented
    if augmented is not None:
        yield "augmented", lambda: draw_augmented(augmented)
    search = content.search
    if search is not None and search.trials:
        yield "history", lambda: draw_history(search)
    if search is not None and search.importances:
        yield "importances", lambda: draw_importances(search.importances, search.n_complete)
    mistakes = content.mistakes()
    if mistakes:
        yield (
            "mistakes",
            lambda: draw_image_grid(
                [content.image(i) for i in mistakes],
                [content.mistake_caption(i) for i in mistakes],
                title="Most confident mistakes (test split)",
            ),
        )
    duplicates = content.near_duplicates
    if duplicates is not None and duplicates.shown:
        yield "near_duplicates", lambda: draw_near_duplicates(duplicates)
    yield from _heatmap_makers(content)
    issues = content.label_issues
    if issues is not None:
        yield "label_issues", lambda: draw_issues(issues)


def _heatmap_makers(content: ReportContent) -> Iterator[tuple[str, FigureMaker]]:
    """The mistakes and the class examples under their heatmaps (those that were made)."""
    heatmaps = content.heatmaps
    if heatmaps is None or not heatmaps.maps:
        return
    n_classes = len(content.classes)
    for key, indices, caption, title in (
        (
            "mistakes_heatmaps",
            content.mistakes(),
            content.mistake_caption,
            "Where the model looked in its most confident mistakes (Grad-CAM of the predicted "
            "class: red most)",
        ),
        (
            "examples_heatmaps",
            content.examples(),
            content.example_caption,
            "Where the model looked in one correct test image per class"
            + (
                f" (the first {N_EXAMPLES} of {n_classes} classes)"
                if n_classes > N_EXAMPLES
                else ""
            ),
        ),
    ):
        shown = [i for i in indices if i in heatmaps.maps]
        if shown:

            def grid(shown: list[int] = shown, caption: Any = caption, title: str = title) -> Any:
                images = [overlay_heatmap(content.image(i), heatmaps.maps[i]) for i in shown]
                return draw_image_grid(images, [caption(i) for i in shown], title=title)

            yield key, grid


def _draw_issues(audit: AuditResult, path: Path) -> None:
    figure = draw_issues(audit)
    if figure is not None:
        save_figure(figure, path)


def write_audit_report(
    audit: AuditResult, folder: Path, title: str, *, figures: bool = True
) -> dict[str, Path]:
    """`autoclf audit`'s folder: label_issues.csv, label_issues.png (when anything was
    flagged), report.md and index.html (the thumbnails embedded). Only these files are
    written; whatever else the folder holds is left alone. Returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {"csv": folder / ISSUES_CSV}
    write_issues_csv(audit, written["csv"])
    figure = folder / ISSUES_FIGURE
    figure.unlink(missing_ok=True)  # an earlier audit's: this one may flag nothing
    if figures:
        _draw_issues(audit, figure)
    drawn = {"label_issues": figure} if figure.is_file() else {}
    written |= {"markdown": folder / "report.md", "html": folder / "index.html", **drawn}
    written["markdown"].write_text(render_audit_markdown(audit, title, drawn), encoding="utf-8")
    written["html"].write_text(render_audit_html(audit, title), encoding="utf-8")
    return written
