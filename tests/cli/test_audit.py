"""`autoclf audit` (cli/export_commands.py) and `run` with `final.audit_labels: true`: the data
folder is only read, an output folder inside it is refused before any work, a budget too small
is one line and exit 2, and `run` puts the label issues into the export's report."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from automl_clf.cli import app
from automl_clf.report.audit import CSV_HEADER
from tests.conftest import write_spec
from tests.final.test_audit import audit_spec, flipped_digits

runner = CliRunner()


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under `folder`: a file's content hash, a folder's name."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        if path.is_file()
        else "folder"
        for path in sorted(folder.rglob("*"))
    }


@pytest.fixture
def flipped_spec(tmp_path: Path) -> Path:
    flipped_digits(tmp_path / "data", per_class=30)
    return write_spec(tmp_path / "spec.yaml", audit_spec(tmp_path / "data", tmp_path))


def test_audit_writes_its_report_outside_the_data_which_it_leaves_unchanged(
    flipped_spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    before = snapshot(data)
    monkeypatch.chdir(tmp_path)  # the default output folder is audits/<study name> here
    result = runner.invoke(app, ["audit", str(flipped_spec), "--folds", "3"])
    assert result.exit_code == 0, result.output
    assert snapshot(data) == before  # not a file added, removed or changed
    out = tmp_path / "audits" / "tiny"
    assert {p.name for p in out.iterdir()} >= {"label_issues.csv", "report.md", "index.html"}
    with (out / "label_issues.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == CSV_HEADER and len(rows) > 1
    assert "label audit: fold 3/3" in result.output
    assert "most likely mislabelled" in result.output and "nothing was changed" in result.output


@pytest.mark.parametrize("inside", [".", "reports/audit"])
def test_an_output_folder_inside_the_data_is_refused_before_any_work(
    flipped_spec: Path, tmp_path: Path, inside: str
) -> None:
    data = tmp_path / "data"
    before = snapshot(data)
    result = runner.invoke(app, ["audit", str(flipped_spec), "--out", str(data / inside)])
    assert result.exit_code == 2
    assert "is inside the data folder" in result.output and "--out" in result.output
    assert "Traceback" not in result.output
    assert snapshot(data) == before


def test_a_budget_too_small_is_one_line_and_exit_2(flipped_spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "audit"
    result = runner.invoke(app, ["audit", str(flipped_spec), "--time", "2s", "--out", str(out)])
    assert result.exit_code == 2
    assert "too small for the label audit" in result.output and "--time" in result.output
    assert not out.exists()


def test_a_missing_data_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "spec.yaml", audit_spec(tmp_path / "nothing", tmp_path))
    result = runner.invoke(app, ["audit", str(spec), "--out", str(tmp_path / "audit")])
    assert result.exit_code == 2
    assert "error:" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_run_with_audit_labels_puts_the_label_issues_into_the_export_report(
    flipped_spec: Path, tmp_path: Path
) -> None:
    raw = audit_spec(
        tmp_path / "data",
        tmp_path,
        study={"n_trials": 1},
        train={"epochs": 3},
        final={"audit_labels": True},
    )
    spec = write_spec(tmp_path / "run.yaml", raw)
    before = snapshot(tmp_path / "data")
    export = tmp_path / "export"
    result = runner.invoke(app, ["run", str(spec), "--export", str(export)])
    assert result.exit_code == 0, result.output
    assert "label audit: fold 5/5" in result.output
    report = export / "report"
    with (report / "label_issues.csv").open(newline="") as handle:
        assert next(csv.reader(handle)) == CSV_HEADER
    page = (report / "index.html").read_text(encoding="utf-8")
    assert 'id="label-issues"' in page and 'href="#label-issues"' in page
    assert "## Label issues" in (report / "report.md").read_text(encoding="utf-8")
    assert snapshot(tmp_path / "data") == before
