"""The budgets: n_trials (finished trials, exact), timeout and time budgets (a running trial
stops at the deadline keeping its best epoch; one cut in its first epoch is FAIL `timeout` and
retried first), epochs per trial."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from automl_clf.cli import app
from automl_clf.search.budget import Budget
from automl_clf.search.run import run_search
from automl_clf.search.study import best_trial, ranked_trials
from automl_clf.spec import load_spec
from tests.conftest import SteppedClock, jump_at, tiny_spec, write_spec

runner = CliRunner()


def load(path: Path) -> optuna.Study:
    spec = load_spec(path)
    return optuna.load_study(study_name=spec.study.name, storage=spec.study.storage)


def test_timeout_ends_the_command_with_the_running_trial_finished_or_failed(
    tmp_path: Path, digits_root: Path
) -> None:
    """The CLI path of a timeout; which of the two ends the trial gets depends on whether an
    epoch fit in the time on this machine: each is tested exactly below, on a stepped clock."""
    raw = tiny_spec(digits_root, tmp_path, study={"n_trials": 2}, train={"epochs": 1000})
    path = write_spec(tmp_path / "spec.yaml", raw)
    result = runner.invoke(app, ["search", str(path), "--timeout", "3", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "(timeout); rerun to continue" in result.output
    (cut,) = load(path).trials  # never RUNNING, never COMPLETE
    if cut.state == TrialState.PRUNED:
        assert cut.user_attrs["stopped_by"] == "deadline"
        assert 1 <= cut.user_attrs["epochs_run"] < 1000
    else:
        assert cut.state == TrialState.FAIL and cut.user_attrs["fail_reason"] == "timeout"


def test_a_deadline_after_an_epoch_keeps_the_best_one_as_a_pruned_trial(
    tmp_path: Path, digits_root: Path
) -> None:
    raw = tiny_spec(digits_root, tmp_path, study={"n_trials": 3}, train={"epochs": 5})
    spec = load_spec(write_spec(tmp_path / "spec.yaml", raw))
    clock = SteppedClock()
    result = run_search(
        spec, budget=Budget.start(60, clock), observer=jump_at(clock, epoch=2), jobs=1
    )
    assert result.timed_out and result.n_ran == 1
    (cut,) = result.study.trials
    assert cut.state == TrialState.PRUNED
    assert cut.user_attrs["stopped_by"] == "deadline"
    assert cut.user_attrs["epochs_run"] == 2 and sorted(cut.intermediate_values) == [1, 2]
    best = min(cut.intermediate_values.values())
    assert cut.user_attrs["objective_value"] == pytest.approx(best)
    assert ranked_trials(result.study) == [cut]
    assert best_trial(result.study).number == 0  # an anytime result: usable as the final model


def test_a_deadline_in_the_first_epoch_fails_the_trial_and_the_rerun_retries_it(
    tmp_path: Path, digits_root: Path
) -> None:
    raw = tiny_spec(digits_root, tmp_path, study={"n_trials": 2}, train={"epochs": 2})
    spec = load_spec(write_spec(tmp_path / "spec.yaml", raw))
    clock = SteppedClock()
    result = run_search(spec, budget=Budget.start(60, clock), observer=jump_at(clock), jobs=1)
    (cut,) = result.study.trials
    assert cut.state == TrialState.FAIL and cut.user_attrs["fail_reason"] == "timeout"

    result = run_search(spec)  # no budget: the rerun retries the cut trial first
    retry = result.study.trials[1]
    assert retry.user_attrs["retry_of"] == 0 and retry.params == cut.params
    finished = result.study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 2 and len(result.study.trials) == 3


def test_each_trial_trains_at_most_train_epochs(tmp_path: Path, digits_root: Path) -> None:
    raw = tiny_spec(
        digits_root, tmp_path, study={"n_trials": 2, "pruner": "none"}, train={"epochs": 2}
    )
    path = write_spec(tmp_path / "spec.yaml", raw)
    assert runner.invoke(app, ["search", str(path)]).exit_code == 0
    for trial in load(path).trials:
        assert max(trial.intermediate_values) == 2 == trial.user_attrs["epochs_run"]


def test_n_trials_counts_finished_trials_not_failed_ones(
    tmp_path: Path, digits_root: Path
) -> None:
    # fc_width 10**9 asks for a 500 GB layer: a real out-of-memory error, FAIL, not counted.
    raw = tiny_spec(
        digits_root,
        tmp_path,
        study={
            "n_trials": 2,
            "try_defaults": False,
            "warm_start": [{"model.cnn.fc_width": 1_000_000_000}],
        },
        model={"cnn": {"filters": [4], "fc_width": {"choices": [16, 1_000_000_000]}}},
        train={"epochs": 2},
    )
    path = write_spec(tmp_path / "spec.yaml", raw)
    result = runner.invoke(app, ["search", str(path)])
    assert result.exit_code == 0, result.output
    study = load(path)
    oom = study.trials[0]
    assert oom.state == TrialState.FAIL  # infeasible, not silently pruned
    assert oom.user_attrs["fail_reason"].startswith("out of memory")
    assert oom.user_attrs["infeasible"] is True
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 2  # the study went on and still holds exactly n_trials finished
