"""The label audit's files (report/audit.py, report/write.py `write_audit_report`): the ranked
CSV safe to open in a spreadsheet, the pages with thumbnails, the user's names shown as written;
from a real audit of digits whose class folders have hostile names."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest

from automl_clf.final.audit import AuditResult, audit_labels
from automl_clf.outputs import safe_cell
from automl_clf.report.audit import CSV_HEADER, ISSUES_CSV, ISSUES_FIGURE
from automl_clf.report.write import write_audit_report
from automl_clf.spec import load_spec
from tests.conftest import write_spec
from tests.final.test_audit import audit_spec, flipped_digits

# digits 0, 1, 7 under names a spreadsheet would run and a page would render
HOSTILE = {"0": "=HYPERLINK(x)", "1": "<b>one", "7": "-7*"}


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> AuditResult:
    folder = tmp_path_factory.mktemp("hostile")
    flipped_digits(folder / "data")
    for digit, name in HOSTILE.items():
        (folder / "data" / digit).rename(folder / "data" / name)
    spec = load_spec(write_spec(folder / "spec.yaml", audit_spec(folder / "data", folder)))
    result = audit_labels(spec, folds=4)
    assert result.issues, "the flipped images should be flagged"
    return result


def test_the_csv_lists_every_issue_ranked_with_its_labels_spreadsheet_safe(
    audited: AuditResult, tmp_path: Path
) -> None:
    written = write_audit_report(audited, tmp_path / "audit", "tiny")
    with written["csv"].open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert written["csv"].name == ISSUES_CSV
    assert rows[0] == CSV_HEADER
    body = [dict(zip(CSV_HEADER, row, strict=True)) for row in rows[1:]]
    assert len(body) == len(audited.issues)
    assert [int(r["rank"]) for r in body] == list(range(1, len(body) + 1))
    confidences = [float(r["self_confidence"]) for r in body]
    assert confidences == sorted(confidences)
    for row, issue in zip(body, audited.issues, strict=True):
        assert row["file"] == str(issue.path)
        assert row["given_label"] == safe_cell(issue.given)
        assert row["suggested_label"] == safe_cell(issue.suggested)
        assert row["split"] in ("train", "val", "test")
        assert float(row["suggested_confidence"]) >= float(row["self_confidence"])
    labels = {r["given_label"] for r in body} | {r["suggested_label"] for r in body}
    assert labels <= {"'=HYPERLINK(x)", "<b>one", "'-7*"}
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)


def test_the_pages_show_thumbnails_and_the_names_as_written(
    audited: AuditResult, tmp_path: Path
) -> None:
    written = write_audit_report(audited, tmp_path / "audit", "tiny")
    page = written["html"].read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == len(audited.thumbnails) >= 1
    assert "<b>one" not in page and "&lt;b&gt;one" in page
    assert 'id="label-issues"' in page
    markdown = written["markdown"].read_text(encoding="utf-8")
    assert f"![likely mislabelled images]({ISSUES_FIGURE})" in markdown
    assert "<b>" not in markdown and r"\<b\>one" in markdown
    assert (tmp_path / "audit" / ISSUES_FIGURE).is_file()


def test_an_audit_that_flags_nothing_leaves_no_earlier_figure_behind(
    audited: AuditResult, tmp_path: Path
) -> None:
    folder = tmp_path / "audit"
    write_audit_report(audited, folder, "tiny")
    (folder / "notes.txt").write_text("the user's")
    clean = dataclasses.replace(audited, issues=[], thumbnails=[])
    written = write_audit_report(clean, folder, "tiny")
    assert not (folder / ISSUES_FIGURE).exists() and "label_issues" not in written
    assert (folder / "notes.txt").read_text() == "the user's"  # only its own files are written
    with written["csv"].open(encoding="utf-8") as handle:
        assert list(csv.reader(handle)) == [CSV_HEADER]
    assert "flags 0 " in written["markdown"].read_text(encoding="utf-8")
