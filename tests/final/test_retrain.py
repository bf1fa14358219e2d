"""The final retrain and the export under an injected deadline (final/retrain.py,
final/export.py with final/allowance.py): a member whose retrain cannot finish is exported as
searched, and the export's optional parts are left out, and named, when there is no time for
them. The clocks are fake: no test waits on, or asserts, wall-clock time."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import automl_clf
from automl_clf.cli import app
from automl_clf.final.allowance import Allowance
from automl_clf.final.export import ExportResult, write_export
from automl_clf.final.formats import NOT_WRITTEN
from automl_clf.final.retrain import FinalResult, retrain
from automl_clf.report.final import final_report
from automl_clf.search.record import TrialRecord
from automl_clf.spec import load_spec
from automl_clf.spec.models import ResolvedSpec
from tests.conftest import tiny_spec, write_spec
from tests.search.test_limits import SteppedClock

runner = CliRunner()


class TickingClock(SteppedClock):
    """A clock that moves `tick` seconds each time it is read: the later a retrain's step, the
    later the time, as on a machine far slower than the trials measured."""

    def __init__(self, tick: float) -> None:
        super().__init__()
        self.tick = tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory, digits_root: Path) -> ResolvedSpec:
    folder = tmp_path_factory.mktemp("searched")
    raw = tiny_spec(digits_root, folder, study={"n_trials": 2, "pruner": "none"})
    raw["train"]["epochs"] = 4
    path = write_spec(folder / "spec.yaml", raw)
    result = runner.invoke(app, ["search", str(path)])
    assert result.exit_code == 0, result.output
    return load_spec(path)


def study_of(spec: ResolvedSpec) -> optuna.Study:
    return optuna.load_study(study_name=str(spec.study.name), storage=str(spec.study.storage))


def test_a_retrain_that_cannot_finish_before_the_deadline_is_exported_as_searched(
    searched: ResolvedSpec,
) -> None:
    study = study_of(searched)
    # The plan (the trial's measured pace, a few seconds at most however busy the machine) fits
    # in the 10,000 s given; the pace does not: each read of the clock, once a training step,
    # is 1,000 s, so the retrain's 20-odd steps would take twice what there is.
    clock = TickingClock(tick=1000.0)
    allowance = Allowance(until=clock.now + 10_000.0, clock=clock)
    final = retrain(searched, study, allowance=allowance)
    member = final.first
    assert member.retrained is False and member.train_on == "train"
    assert any("could not finish" in note and "as searched" in note for note in final.notes)
    kept = load_file(TrialRecord.of(member.trial).weights["file"])  # type: ignore[index]
    mine = member.model.state_dict()
    assert all(torch.equal(kept[name], mine[name].cpu()) for name in kept)
    assert final.test.accuracy >= 0  # tested all the same


def test_without_time_for_a_retrain_it_is_not_started(searched: ResolvedSpec) -> None:
    clock = SteppedClock()
    allowance = Allowance(until=0.5, clock=clock)  # less than the test and export need
    final = retrain(searched, study_of(searched), allowance=allowance)
    assert final.first.retrained is False
    assert any(s.startswith(f"retraining trial #{final.trial.number}") for s in final.skipped)


def test_with_time_the_retrain_runs_and_nothing_is_skipped(searched: ResolvedSpec) -> None:
    clock = SteppedClock()  # stands still: all the time in the world
    final = retrain(searched, study_of(searched), allowance=Allowance(until=100.0, clock=clock))
    assert final.first.retrained is True and final.skipped == []


def exported_as_searched(
    searched: ResolvedSpec, tmp_path: Path, allowance: Allowance
) -> tuple[FinalResult, Path, ExportResult]:
    """The study's best trial, as searched, exported with its report under `allowance`."""
    study = study_of(searched)
    final = retrain(searched, study, retrain_members=False)
    out = tmp_path / "export"
    report = final_report(final, searched, study)
    return final, out, write_export(final, out, searched, report=report, allowance=allowance)


def test_the_export_leaves_out_what_does_not_fit_and_says_so(
    searched: ResolvedSpec, tmp_path: Path
) -> None:
    clock = SteppedClock()
    clock.now = 10.0
    allowance = Allowance(until=10.0, clock=clock)  # the deadline is now
    final, out, written = exported_as_searched(searched, tmp_path, allowance)
    assert {name: check.error for name, check in written.formats.items()} == {
        "torchscript": NOT_WRITTEN,
        "onnx": NOT_WRITTEN,
    }
    assert not (out / "model.pt").exists() and not (out / "model.onnx").exists()
    assert not list((out / "report").glob("*.png"))  # no figures …
    text = (out / "report" / "report.md").read_text()
    assert "left out to keep the time budget" in text and "onnx (model.onnx)" in text
    for part in ("torchscript (model.pt)", "onnx (model.onnx)", "the report's figures"):
        assert any(s.startswith(part) for s in final.skipped)
    model = automl_clf.load(out)  # … and still a whole export that predicts
    paths = [str(p) for p in final.test_data.paths[:3]]
    assert len(model.predict(paths)) == 3


def test_a_short_budget_leaves_out_the_heatmaps_and_says_so(
    searched: ResolvedSpec, tmp_path: Path
) -> None:
    clock = SteppedClock()  # stands still
    # time for the figures, none for heatmaps as slow as the last final step measured them
    allowance = Allowance(until=100.0, clock=clock, costs={"heatmaps": 1000.0})
    final, out, _ = exported_as_searched(searched, tmp_path, allowance)
    assert (out / "report" / "confusion_matrix.png").is_file()  # the figures were drawn …
    assert not list((out / "report").glob("*heatmaps.png"))  # … the heatmaps not
    assert any(s.startswith("the report's heatmaps (about 16 m 40 s") for s in final.skipped)
    text = (out / "report" / "report.md").read_text()
    assert "left out to keep the time budget" in text and "the report's heatmaps" in text
    assert "Where the model looked" not in (out / "report" / "index.html").read_text()


def test_the_figures_start_when_their_first_ones_fit(
    searched: ResolvedSpec, tmp_path: Path
) -> None:
    """Drawn one by one, they stop at the deadline by themselves: 30 s left of a 100 s
    estimate starts them (a quarter fits), where gated on all of them they were left out whole."""
    allowance = Allowance(until=30.0, clock=SteppedClock(), costs={"figures": 100.0})  # still
    final, out, _ = exported_as_searched(searched, tmp_path, allowance)
    assert (out / "report" / "confusion_matrix.png").is_file()
    assert not any(s.startswith("the report's figures") for s in final.skipped)
