"""The label audit's findings as text, a table, a CSV and a figure (final/audit.py finds them).

Shared by the audit's own report (`write_audit_report` in report/write.py: `autoclf audit`) and
the "Label issues" section of an export's report (`run` with `final.audit_labels: true`), so
both say the same thing in the same words.

label_issues.csv holds every flagged image, most likely mislabelled first:

    rank, file, split, given_label, suggested_label, self_confidence, suggested_confidence

A cell a spreadsheet would run as a formula gets a leading ' (automl_clf/outputs.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from automl_clf.outputs import csv_writer
from automl_clf.report.plots import draw_image_grid
from automl_clf.report.tables import Table, duration

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from automl_clf.final.audit import AuditResult

ISSUES_CSV = "label_issues.csv"
ISSUES_FIGURE = "label_issues.png"
CSV_HEADER = [
    "rank",
    "file",
    "split",
    "given_label",
    "suggested_label",
    "self_confidence",
    "suggested_confidence",
]
N_LISTED = 50  # issues in the report's table (the CSV holds them all)


def confidence_text(p: float) -> str:
    """A probability to 3 decimals; one below 0.001 as `<0.001` rather than a bare 0."""
    return f"{p:.3f}" if p >= 0.0005 else "<0.001"


def write_issues_csv(audit: AuditResult, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv_writer(handle)
        writer.writerow(CSV_HEADER)
        for issue in audit.issues:
            writer.writerow(
                [
                    issue.rank,
                    str(issue.path),
                    issue.split,
                    issue.given,
                    issue.suggested,
                    f"{issue.self_confidence:.6f}",
                    f"{issue.suggested_confidence:.6f}",
                ]
            )


def issues_table(audit: AuditResult, n: int = N_LISTED) -> Table:
    """The `n` most likely mislabelled images."""
    rows = [
        [
            str(issue.rank),
            str(issue.path),
            issue.split,
            issue.given,
            issue.suggested,
            confidence_text(issue.self_confidence),
        ]
        for issue in audit.issues[:n]
    ]
    return Table(["rank", "file", "split", "given", "suggested", "self-confidence"], rows)


def audit_sentences(audit: AuditResult) -> list[str]:
    """What was audited, how, what was found, and what was not audited."""
    n, found = len(audit.paths), len(audit.issues)
    done = sum(fold.state == "done" for fold in audit.folds)
    share = f" ({found / audit.n_audited:.1%})" if audit.n_audited else ""
    listed = f"; the first {N_LISTED} are listed below" if found > N_LISTED else ""
    sentences = [
        f"{audit.n_audited} of {n} labelled images (train, val and test) got out-of-sample "
        f"probabilities from {done} of {len(audit.folds)} cross-fitted models: {audit.source}, "
        f"{audit.epochs} epoch(s) each on the other folds, in {duration(audit.seconds)}.",
        f"Confident learning (cleanlab) flags {found}{share} as likely mislabelled, in "
        f"{ISSUES_CSV}, most likely first{listed}.",
        "Self-confidence is the probability the held-out model (which never saw the image) "
        "gives the image's label: the lower, the more it disagrees. The suggested label is its "
        "most probable class. Nothing was changed: look at each image and fix its label in "
        "your data if it is wrong.",
    ]
    for fold in audit.unaudited:
        why = "cut by the time budget" if fold.state == "cut" else "not started (no time left)"
        sentences.append(
            f"Fold {fold.number} of {len(audit.folds)} was {why}: its {fold.n_images} images "
            "were not audited."
        )
    sentences += [f"Note: {note}." for note in audit.notes]
    return sentences


def issue_caption(audit: AuditResult, k: int) -> str:
    """`given 7 → 1` and the self-confidence, on two lines."""
    issue = audit.issues[k]
    return f"given {issue.given} → {issue.suggested}\n(p {confidence_text(issue.self_confidence)})"


def issue_image(audit: AuditResult, k: int) -> np.ndarray:
    """Issue `k`'s pixels as (H, W) grayscale or (H, W, 3) colour uint8."""
    pixels = audit.thumbnails[k]
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def draw_issues(audit: AuditResult) -> Figure | None:
    """The images the result kept thumbnails of, most likely mislabelled first; None when
    nothing was flagged."""
    shown = range(len(audit.thumbnails))
    if not shown:
        return None
    return draw_image_grid(
        [issue_image(audit, k) for k in shown],
        [issue_caption(audit, k) for k in shown],
        title="Likely mislabelled images: given label → suggested (self-confidence)",
    )
