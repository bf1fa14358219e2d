"""Searches on real SQLite studies: budgets, resume, interruption and failed trials."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from automl_clf.cli import app
from automl_clf.spec import load_spec
from tests.conftest import tiny_spec, write_spec

runner = CliRunner()


def states(spec_path: Path) -> dict[str, int]:
    spec = load_spec(spec_path)
    study = optuna.load_study(study_name=spec.study.name, storage=spec.study.storage)
    counts = {s.name: 0 for s in TrialState}
    for trial in study.trials:
        counts[trial.state.name] += 1
    return counts


def finished(spec_path: Path) -> int:
    counts = states(spec_path)
    return counts["COMPLETE"] + counts["PRUNED"]


def test_tiny_search_completes_with_metrics_on_each_trial(
    tmp_path: Path, digits_root: Path
) -> None:
    spec = tiny_spec(digits_root, tmp_path, study={"pruner": {"kind": "none"}})
    spec_file = write_spec(tmp_path / "spec.yaml", spec)
    result = runner.invoke(app, ["search", str(spec_file)])
    assert result.exit_code == 0, result.output
    loaded = load_spec(spec_file)
    study = optuna.load_study(study_name=loaded.study.name, storage=loaded.study.storage)
    assert len(study.trials) == 3
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE
        assert set(trial.intermediate_values) == {1, 2, 3}  # val loss reported every epoch
        for key in ("val_loss", "val_accuracy", "epochs_run", "best_epoch", "n_params", "config"):
            assert key in trial.user_attrs
        assert trial.value == pytest.approx(trial.user_attrs["val_loss"])
        stored = trial.user_attrs["config"]
        assert stored["train"]["lr"] == trial.params["train.lr"]  # what was sampled was trained
    assert "best trial #" in result.output


def test_rerun_resumes_and_n_trials_sets_the_total(spec_file: Path) -> None:
    assert runner.invoke(app, ["search", str(spec_file), "--n-trials", "2"]).exit_code == 0
    assert finished(spec_file) == 2
    again = runner.invoke(app, ["search", str(spec_file), "--n-trials", "2"])
    assert again.exit_code == 0
    assert "already holds 2 finished trials" in again.output
    assert finished(spec_file) == 2
    assert runner.invoke(app, ["search", str(spec_file), "--n-trials", "5"]).exit_code == 0
    assert finished(spec_file) == 5
    assert sum(states(spec_file).values()) == 5


def test_resumed_sampler_does_not_repeat_the_first_trials(spec_file: Path) -> None:
    runner.invoke(app, ["search", str(spec_file), "--n-trials", "2"])
    runner.invoke(app, ["search", str(spec_file), "--n-trials", "4"])
    spec = load_spec(spec_file)
    study = optuna.load_study(study_name=spec.study.name, storage=spec.study.storage)
    lrs = [t.params["train.lr"] for t in study.trials]
    assert len(set(lrs)) == 4


def test_failing_trials_are_fail_with_reason_and_stop_the_search(
    tmp_path: Path, digits_root: Path
) -> None:
    # An absurd learning rate makes the loss diverge: every trial fails the same way.
    spec = tiny_spec(
        digits_root,
        tmp_path,
        train={"lr": 1.0e12, "optimizer": "sgd"},
        study={"max_consecutive_failures": 2},
    )
    path = write_spec(tmp_path / "fails.yaml", spec)
    result = runner.invoke(app, ["search", str(path)])
    assert result.exit_code == 1
    assert "2 trials failed in a row" in result.output
    assert "lower train.lr" in result.output
    counts = states(path)
    assert counts["FAIL"] == 2 and counts["PRUNED"] == 0 and counts["RUNNING"] == 0
    loaded = load_spec(path)
    study = optuna.load_study(study_name=loaded.study.name, storage=loaded.study.storage)
    assert all("loss became" in t.user_attrs["fail_reason"] for t in study.trials)


def test_a_backbone_too_big_for_the_images_is_refused_before_any_trial(
    tmp_path: Path, digits_root: Path
) -> None:
    spec = tiny_spec(
        digits_root, tmp_path, model={"backbone": {"choices": ["cnn", "test_convnext"]}}
    )
    path = write_spec(tmp_path / "small.yaml", spec)
    for command in ("validate", "search"):
        result = runner.invoke(app, [command, str(path)])
        assert result.exit_code == 2, result.output
        assert "'test_convnext' cannot process 8×8 px images" in result.output
    assert not (tmp_path / "tiny.db").exists() or sum(states(path).values()) == 0


def test_changed_data_is_refused_on_resume(spec_file: Path, tmp_path: Path) -> None:
    from automl_clf.datasets import write_digits

    assert runner.invoke(app, ["search", str(spec_file), "--n-trials", "1"]).exit_code == 0
    spec = load_spec(spec_file)
    other = write_digits(tmp_path / "other", classes=[2, 3], per_class=20)
    raw = tiny_spec(other, tmp_path)
    moved = write_spec(tmp_path / "moved.yaml", raw)
    result = runner.invoke(app, ["search", str(moved), "--study-name", spec.study.name or ""])
    assert result.exit_code == 1
    assert "differs from the data study" in result.output


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_search_leaves_no_running_trial_and_resumes(
    tmp_path: Path, digits_root: Path, sig: signal.Signals
) -> None:
    # Long trials, so the signal lands mid-trial.
    slow = tiny_spec(digits_root, tmp_path, train={"epochs": 400}, study={"n_trials": 2})
    path = write_spec(tmp_path / "slow.yaml", slow)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "automl_clf.cli", "search", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if _running_trial_has_reported(path):
                break
            assert worker.poll() is None, worker.stdout.read().decode() if worker.stdout else ""
            time.sleep(0.2)
        worker.send_signal(sig)
        output = worker.communicate(timeout=60)[0].decode()
    finally:
        worker.kill()
    assert worker.returncode == 130, output
    assert "interrupted" in output
    counts = states(path)
    assert counts["RUNNING"] == 0 and counts["FAIL"] == 1

    # The rerun (shorter epochs, same study) retries the interrupted params first, then finishes.
    slow["train"]["epochs"] = 2
    write_spec(path, slow)
    result = runner.invoke(app, ["search", str(path)])
    assert result.exit_code == 0, result.output
    counts = states(path)
    assert counts["COMPLETE"] + counts["PRUNED"] == 2 and counts["RUNNING"] == 0
    spec = load_spec(path)
    study = optuna.load_study(study_name=spec.study.name, storage=spec.study.storage)
    failed = next(t for t in study.trials if t.state == TrialState.FAIL)
    assert failed.user_attrs["fail_reason"] == "interrupted"
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == failed.number]
    assert len(retry) == 1 and retry[0].params == failed.params


def _running_trial_has_reported(path: Path) -> bool:
    spec = load_spec(path)
    try:
        study = optuna.load_study(study_name=spec.study.name, storage=spec.study.storage)
    except KeyError:
        return False
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return bool(running and running[0].intermediate_values)
