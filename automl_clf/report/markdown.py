"""`report.md`: the essentials of an export's report, readable in a terminal or a pull request.

Figures are linked by file name (they sit beside report.md); the full page is index.html. Every
text that comes from the user or the data (class names, paths, parameter values, failure
reasons) goes through `md_text`, so it shows as written and never as markup or raw HTML.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from automl_clf.report import audit as audits
from automl_clf.report import duplicates, tables
from automl_clf.report.content import ReportContent
from automl_clf.report.tables import Table

if TYPE_CHECKING:
    from automl_clf.final.audit import AuditResult

# Characters that Markdown (CommonMark, GitHub's tables, strikethrough and math) would read as
# markup, or as raw HTML and entities. A backslash before any of them shows the character itself.
_MARKUP = re.compile(r"([\\`*_\[\]<>&|~$])")
MATRIX_TABLE_CLASSES = 12  # classes up to which report.md holds the whole confusion matrix


def md_text(text: str) -> str:
    """`text` as Markdown that renders exactly as written, on one line (a class named
    `<img src=x onerror=…>` stays those characters; `*cat*` stays asterisks)."""
    return _MARKUP.sub(r"\\\1", " ".join(text.splitlines()))


def markdown_table(table: Table) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(md_text(cell) for cell in cells) + " |"

    return [line(table.header), "|" + "---|" * len(table.header), *map(line, table.rows), ""]


def render_markdown(content: ReportContent, figures: dict[str, Path]) -> str:
    """The report as Markdown; `figures` maps figure keys to the PNGs written beside it.

    One flat list, section after section in the order the page reads (as html.py's): longer
    than the house's 60 lines on purpose, since cutting it up would scatter that order."""

    def figure(key: str, alt: str) -> list[str]:
        return [f"![{alt}]({figures[key].name})", ""] if key in figures else []

    lines = [f"# autoclf report: {md_text(content.title)}", "", md_text(tables.headline(content))]
    lines += [""]
    lines += ["## Test metrics", "", *markdown_table(tables.test_metrics_table(content))]
    lines += ["## Per class", "", *markdown_table(tables.per_class_table(content.metrics))]
    lines += ["## Confusion matrix (rows = true, columns = predicted)", ""]
    if len(content.classes) <= MATRIX_TABLE_CLASSES:
        lines += markdown_table(tables.confusion_table(content))
    else:  # a table this wide is unreadable in a terminal
        lines += [f"{len(content.classes)} classes: the counts are in metrics.json.", ""]
    confused = tables.confused_pairs_table(content)
    if confused is not None:
        lines += ["### Most frequent confusions", "", *markdown_table(confused)]
    lines += figure("confusion", "confusion matrix")
    lines += figure("confusion_normalized", "normalised confusion matrix")
    lines += [
        "## Calibration",
        "",
        *(f"{md_text(s)}\n" for s in tables.calibration_sentences(content)),
    ]
    calibration = tables.calibration_table(content)
    if calibration is not None:
        lines += markdown_table(calibration)
    lines += figure("reliability_before", "reliability diagram before temperature scaling")
    lines += figure("reliability", "reliability diagram")
    lines += ["## Unsure answers and out-of-distribution images", ""]
    lines += [f"{md_text(s)}\n" for s in tables.selective_sentences(content)]
    lines += markdown_table(tables.coverage_table(content))
    lines += figure("coverage", "accuracy against coverage")
    lines += ["## Training", "", *(f"- {md_text(s)}" for s in tables.curve_sentences(content))]
    lines += [""]
    lines += figure("curves", "loss and accuracy per epoch")
    preview = content.augmented
    lines += [md_text(preview.description if preview else tables.NO_AUGMENTATION), ""]
    lines += figure("augmented", "training images before and after augmentation")
    mistakes = tables.mistakes_table(content)
    if mistakes.rows:
        lines += ["## Most confident mistakes", "", *markdown_table(mistakes)]
        lines += figure("mistakes", "most confident mistakes")
    lines += figure("mistakes_heatmaps", "where the model looked in its mistakes (Grad-CAM)")
    lines += figure("examples_heatmaps", "where the model looked, one image per class (Grad-CAM)")
    if content.heatmaps is not None:
        lines += [f"Heatmaps: {md_text(note)}." for note in content.heatmaps.notes]
        lines += [""] if content.heatmaps.notes else []
    lines += ["## Final model", "", *markdown_table(tables.model_table(content))]
    lines += [f"Note: {md_text(note)}." for note in content.final.notes]
    lines += [""] if content.final.notes else []
    members = tables.members_table(content)
    if members is not None:
        lines += ["### Ensemble members (best first)", "", *markdown_table(members)]
        lines += [f"### Configuration of member 0 (trial #{content.final.trial})", ""]
    else:
        lines += ["### Configuration", ""]
    lines += markdown_table(tables.params_table(content))
    seeds = tables.seeds_table(content)
    if seeds is not None:
        lines += ["### Seeds", "", *markdown_table(seeds)]
    lines += ["### Formats", "", *markdown_table(tables.formats_table(content))]
    search = content.search
    if search is not None:
        lines += ["## Search", "", *(f"- {md_text(s)}" for s in tables.search_sentences(search))]
        lines += [""]
        comparison = tables.comparison_table(search)
        if comparison is not None:
            lines += ["### Best vs runner-up", "", *markdown_table(comparison)]
        lines += ["### Parameter importances", ""]
        if search.importances:
            lines += markdown_table(tables.importances_table(search))
        lines += [*(md_text(s) for s in tables.importance_sentences(search)), ""]
        lines += figure("history", "optimisation history")
    data = content.data
    layout = "pre-split" if data.presplit else "split by autoclf"
    lines += [
        "## Data",
        "",
        f"{md_text(data.root)} ({layout}, {data.n_files} files, data sha256 "
        f"`{data.fingerprint[:16]}…`).",
        "",
    ]
    lines += markdown_table(tables.data_table(content))
    if data.skipped:
        lines += [f"{len(data.skipped)} file(s) skipped:", ""]
        lines += markdown_table(tables.skipped_table(content))
    lines += ["## Near-duplicates", "", *(md_text(s) for s in duplicates.sentences(content)), ""]
    clusters = duplicates.clusters_table(content)
    if clusters.rows:
        lines += markdown_table(clusters)
        lines += figure("near_duplicates", "clusters of near-duplicate images")
    if content.label_issues is not None:
        lines += label_issues_markdown(content.label_issues, figures)
    return "\n".join(lines)


def label_issues_markdown(audit: AuditResult, figures: dict[str, Path]) -> list[str]:
    """The label audit's section (report/audit.py): what ran, the table, the figure."""
    lines = ["## Label issues: images that look mislabelled", ""]
    lines += [*(md_text(s) for s in audits.audit_sentences(audit)), ""]
    if audit.issues:
        lines += markdown_table(audits.issues_table(audit))
    if "label_issues" in figures:
        lines += [f"![likely mislabelled images]({figures['label_issues'].name})", ""]
    return lines


def render_audit_markdown(audit: AuditResult, title: str, figures: dict[str, Path]) -> str:
    """`autoclf audit`'s report.md: the label issues section under a title."""
    heading = [f"# autoclf label audit: {md_text(title)}", "", md_text(str(audit.root)), ""]
    return "\n".join(heading + label_issues_markdown(audit, figures))
