"""`autoclf run`: the whole job under one time budget. A tiny budget still ends with a usable
export; the final step retrains only when the plan says it fits (an injected clock decides, no
test waits on wall-clock time); a budget too small for one epoch is refused before any work."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from PIL import Image
from typer.testing import CliRunner

import automl_clf
from automl_clf.cli import app
from automl_clf.errors import SpecError, StudyError
from automl_clf.job import check_learned, run_job
from automl_clf.search.budget import Budget
from automl_clf.search.objective import QuietObserver
from automl_clf.spec import load_spec
from automl_clf.train.session import probe_epoch_seconds
from tests.conftest import tiny_spec, write_spec
from tests.search.test_limits import SteppedClock

runner = CliRunner()


@pytest.mark.slow
def test_run_with_a_tiny_budget_ends_with_a_usable_export(
    tmp_path: Path, digits_root: Path
) -> None:
    """No n_trials: the budget alone decides how many trials run."""
    raw = tiny_spec(digits_root, tmp_path, train={"epochs": 50})
    del raw["study"]["n_trials"]
    path = write_spec(tmp_path / "spec.yaml", raw)
    out = tmp_path / "export"
    result = runner.invoke(app, ["run", str(path), "--time", "25s", "--export", str(out)])
    assert result.exit_code == 0, result.output
    assert "time budget 25 s" in result.output and "test accuracy" in result.output
    model = automl_clf.load(out)
    assert len(model.classes_) == 3
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tiny.db'}")
    assert study.user_attrs["final_costs"]["write"] > 0  # measured, for the next plan
    states = {t.state for t in study.trials}
    assert optuna.trial.TrialState.RUNNING not in states


class JumpAfterTrials(QuietObserver):
    """A search observer that moves the clock `seconds` ahead once `n` trials finished."""

    def __init__(self, clock: SteppedClock, n: int, seconds: float) -> None:
        self.clock, self.n, self.seconds, self.seen = clock, n, seconds, 0

    def trial_finished(self, study: optuna.Study, trial: Any) -> None:
        self.seen += 1
        if self.seen == self.n:
            self.clock.now += self.seconds


@pytest.mark.parametrize(("jump", "retrained"), [(0.0, 1), (999.0, 0)])
def test_auto_retrains_only_when_the_rest_of_the_budget_fits_it(
    tmp_path: Path, digits_root: Path, jump: float, retrained: int
) -> None:
    """1000 s on a clock that stands still but for one jump after the last trial: with no jump
    the retrain fits; 1 s before the end it does not (the test and the export's required parts
    need more), and the export is the trial's own, its optional parts left out and named."""
    raw = tiny_spec(digits_root, tmp_path, study={"n_trials": 2, "budget": 1000})
    spec = load_spec(write_spec(tmp_path / "spec.yaml", raw))
    clock = SteppedClock()
    seen: list[int] = []
    job = run_job(
        spec,
        tmp_path / "export",
        observer=JumpAfterTrials(clock, 2, jump),
        final_started=lambda retrains, estimate: seen.append(retrains),
        clock=clock,
        jobs=1,  # the injected clock is this process's
        contention=lambda: 1.0,  # an idle machine's, whatever this one's load
    )
    assert seen == [retrained] and job.retrained == retrained
    assert job.final.first.retrained is bool(retrained)
    if not retrained:
        skipped = " ".join(job.final.skipped)
        assert "retraining trial #" in skipped and "onnx (model.onnx)" in skipped
        assert not (tmp_path / "export" / "model.onnx").exists()
    else:
        assert job.final.skipped == []
    assert automl_clf.load(tmp_path / "export").classes_
    assert job.budget is not None
    assert [p.name for p in job.budget.phases] == ["start", "plan", "search", "final"]


def test_a_budget_too_small_for_one_epoch_is_refused_before_any_trial(
    tmp_path: Path, digits_root: Path
) -> None:
    raw = tiny_spec(digits_root, tmp_path)
    path = write_spec(tmp_path / "spec.yaml", raw)
    result = runner.invoke(
        app, ["run", str(path), "--time", "1s", "--export", str(tmp_path / "x")]
    )
    assert result.exit_code == 2
    assert "too small" in result.output and "at least --time" in result.output
    assert not (tmp_path / "tiny.db").exists() or not optuna.get_all_study_names(
        f"sqlite:///{tmp_path / 'tiny.db'}"
    )  # no study, no trial
    assert not (tmp_path / "x").exists()


def test_a_bad_time_is_one_line_naming_it(tmp_path: Path, digits_root: Path) -> None:
    path = write_spec(tmp_path / "spec.yaml", tiny_spec(digits_root, tmp_path))
    result = runner.invoke(app, ["run", str(path), "--time", "soon"])
    assert result.exit_code == 2
    assert "study.budget" in result.output and "'soon'" in result.output


def test_run_without_a_budget_searches_n_trials_then_exports(
    tmp_path: Path, digits_root: Path
) -> None:
    raw = tiny_spec(digits_root, tmp_path, study={"n_trials": 2})
    path = write_spec(tmp_path / "spec.yaml", raw)
    result = runner.invoke(app, ["run", str(path), "--export", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    # `run` warns as `search` does: 2 trials never leave tpe's 10 random ones
    assert "tpe never proposes one" in " ".join(result.output.split())
    assert (
        "no time budget" in result.output
        and "time budget" not in result.output.split("no time budget")[1]
    )
    assert automl_clf.load(tmp_path / "out").classes_


def test_an_export_inside_the_data_folder_is_refused_before_any_work(
    tmp_path: Path, digits_root: Path
) -> None:
    """The next run would read the export's report PNGs as a class `exported`."""
    data = shutil.copytree(digits_root, tmp_path / "data")
    path = write_spec(tmp_path / "spec.yaml", tiny_spec(data, tmp_path, study={"n_trials": 1}))
    result = runner.invoke(app, ["run", str(path), "--export", str(data / "exported")])
    assert result.exit_code == 2, result.output
    assert f"--export {data / 'exported'} is inside the data folder {data}" in result.output
    assert "would be read as data by the next run" in result.output
    assert sorted(p.name for p in data.iterdir()) == ["0", "1", "7"]  # nothing added
    assert not (tmp_path / "tiny.db").exists()  # no study either: refused before the search


def test_the_probe_times_real_steps_of_a_config(tmp_path: Path, digits_root: Path) -> None:
    from automl_clf.data import load_dataset
    from automl_clf.spec import FixedParams, resolve

    spec = load_spec(write_spec(tmp_path / "spec.yaml", tiny_spec(digits_root, tmp_path)))
    config = resolve(spec, FixedParams({}, strict=False))
    seconds = probe_epoch_seconds(config, load_dataset(spec.data), steps=3)
    assert 0 < seconds < float("inf")


def test_a_probe_stops_after_its_time_with_one_timed_step_at_least(
    tmp_path: Path, digits_root: Path
) -> None:
    """The timed steps end once they took `max_seconds` (a short budget on a busy machine
    cannot spend a third of itself probing), but one is always timed."""
    from automl_clf.data import load_dataset
    from automl_clf.spec import FixedParams, resolve
    from automl_clf.train.session import probe_step_times

    raw = tiny_spec(digits_root, tmp_path, train={"batch_size": 4})
    spec = load_spec(write_spec(tmp_path / "spec.yaml", raw))
    config, dataset = resolve(spec, FixedParams({}, strict=False)), load_dataset(spec.data)
    assert len(probe_step_times(config, dataset, steps=4)) == 3
    assert len(probe_step_times(config, dataset, steps=4, max_seconds=0.0)) == 1
    assert len(probe_step_times(config, dataset, steps=4, max_seconds=3600.0)) == 3


def test_a_spec_budget_reads_durations(tmp_path: Path, digits_root: Path) -> None:
    raw = tiny_spec(digits_root, tmp_path, study={"budget": "1m30s"})
    assert load_spec(write_spec(tmp_path / "spec.yaml", raw)).study.budget == 90
    raw["study"]["budget"] = "-3m"
    with pytest.raises(SpecError, match=r"study\.budget"):
        load_spec(write_spec(tmp_path / "spec.yaml", raw))


@pytest.mark.slow
def test_audit_labels_takes_its_share_of_the_budget_before_the_search(
    tmp_path: Path, digits_root: Path
) -> None:
    """`final.audit_labels: true` under a 1000 s budget on a clock that stands still: the audit
    gets AUDIT_SHARE of it (its phase in the budget table), trains every fold, and the export's
    report holds its section."""
    from automl_clf.job import AUDIT_SHARE

    raw = tiny_spec(
        digits_root, tmp_path, study={"n_trials": 1, "budget": 1000}, final={"audit_labels": True}
    )
    spec = load_spec(write_spec(tmp_path / "spec.yaml", raw))
    job = run_job(spec, tmp_path / "export", clock=SteppedClock(), jobs=1)
    assert job.audit is not None and job.budget is not None
    assert [fold.state for fold in job.audit.folds] == ["done"] * 5
    assert job.audit.n_audited == len(job.audit.paths)
    phases = {phase.name: phase for phase in job.budget.phases}
    assert [p.name for p in job.budget.phases][:4] == ["start", "label audit", "plan", "search"]
    assert phases["label audit"].planned_s == AUDIT_SHARE * 1000
    assert (job.export.report / "label_issues.csv").is_file()
    assert 'id="label-issues"' in (job.export.report / "index.html").read_text()


def noise_folder(root: Path, classes: int = 3, per_class: int = 40) -> Path:
    """Class folders of random pixels: no model can learn their labels."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (12, 12), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")
    return root


def test_a_budget_that_buys_no_model_better_than_chance_exports_nothing_and_says_so(
    tmp_path: Path,
) -> None:
    """Labels no model can learn: the best trial is no better than answering the commonest
    class, so the job stops before the final step with what it bought and what to do."""
    root = noise_folder(tmp_path / "noise")
    raw = tiny_spec(root, tmp_path, study={"budget": 1000})
    del raw["study"]["n_trials"]  # the budget alone ends the search: here, after 2 trials
    spec = load_spec(write_spec(tmp_path / "spec.yaml", raw))
    clock = SteppedClock()
    with pytest.raises(StudyError) as caught:
        run_job(
            spec,
            tmp_path / "export",
            observer=JumpAfterTrials(clock, 2, 999.0),  # less left than the export needs
            clock=clock,
            jobs=1,
        )
    text = str(caught.value)
    assert "no usable model in 16 m 40 s" in text and "no better than always answering" in text
    assert "nothing was exported" in text and "--time 50m --set study.name=tiny-longer" in text
    assert "epoch(s) at 8 px" in text
    assert not (tmp_path / "export" / "model.json").exists()


@pytest.mark.parametrize(("accuracy", "refused"), [(0.17, True), (0.20, True), (0.21, False)])
def test_chance_is_the_commonest_class_plus_two_standard_errors(
    accuracy: float, refused: bool
) -> None:
    """120 validation images of 6 balanced classes: chance is 1/6 ± 0.034, so 0.20 is still
    chance and 0.21 is a model."""
    study = optuna.create_study()
    record = {"val_accuracy": accuracy}
    study.add_trial(optuna.trial.create_trial(value=1.0, user_attrs=record))
    labels = np.repeat(np.arange(6), 20)
    budget = Budget.start(60.0, SteppedClock())
    if refused:
        with pytest.raises(StudyError, match=f"scores {accuracy:.2f} on validation"):
            check_learned(study, labels, budget, None)
    else:
        check_learned(study, labels, budget, None)
