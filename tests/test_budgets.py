"""The three budgets: n_trials (finished trials, exact), timeout (wall-clock per command, a
running trial stops after its epoch as FAIL `timeout` and is retried first), epochs per trial."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState
from typer.testing import CliRunner

from automl_clf.cli import app
from automl_clf.spec import load_spec
from tests.conftest import tiny_spec, write_spec

runner = CliRunner()


def load(path: Path) -> optuna.Study:
    spec = load_spec(path)
    return optuna.load_study(study_name=spec.study.name, storage=spec.study.storage)


def test_timeout_stops_a_running_trial_as_timeout_and_the_rerun_retries_it(
    tmp_path: Path, digits_root: Path
) -> None:
    raw = tiny_spec(digits_root, tmp_path, study={"n_trials": 2}, train={"epochs": 1000})
    path = write_spec(tmp_path / "spec.yaml", raw)
    result = runner.invoke(app, ["search", str(path), "--timeout", "2"])
    assert result.exit_code == 0, result.output
    assert "(timeout); rerun to continue" in result.output
    study = load(path)
    assert [t.state for t in study.trials] == [TrialState.FAIL]  # never RUNNING, never PRUNED
    cut = study.trials[0]
    assert cut.user_attrs["fail_reason"] == "timeout"
    assert 1 <= cut.user_attrs["epochs_run"] < 1000  # stopped after an epoch, not at the end

    raw["train"]["epochs"] = 2
    write_spec(path, raw)
    result = runner.invoke(app, ["search", str(path)])
    assert result.exit_code == 0, result.output
    study = load(path)
    retry = study.trials[1]
    assert retry.user_attrs["retry_of"] == 0 and retry.params == cut.params
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 2 and len(study.trials) == 3


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
