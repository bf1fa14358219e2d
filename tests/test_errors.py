"""A failed trial against a fatal error: which is which (errors.py), and what a search does with
each: a failed trial is FAIL with its traceback and the search goes on; a fatal error stops the
search after that one trial, not after `max_consecutive_failures`."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from typer.testing import CliRunner

from automl_clf.cli import app
from automl_clf.errors import (
    DataError,
    FatalError,
    SpecError,
    StorageError,
    TrialFailed,
    fatal_error,
    is_out_of_memory,
)
from automl_clf.search.record import TrialRecord
from automl_clf.spec import load_spec
from tests.conftest import tiny_spec, write_spec

runner = CliRunner()

FATAL = {
    "a missing library": ModuleNotFoundError("No module named 'optuna_dashboard'"),
    "a broken library": ImportError("cannot import name 'save_note' from 'optuna_dashboard'"),
    "a vanished data folder": FileNotFoundError(errno.ENOENT, "No such file", "/data/cat/1.png"),
    "a full disk": OSError(errno.ENOSPC, "No space left on device", "/studies/x/best.pt"),
    "a read-only folder": PermissionError(errno.EACCES, "Permission denied", "/studies"),
    "a CUDA fault (torch ≥ 2.8)": torch.AcceleratorError(
        "CUDA error: an illegal memory access was encountered"
    ),
    "a CUDA fault (older torch)": RuntimeError("CUDA error: device-side assert triggered"),
    "no CUDA driver": RuntimeError("Found no NVIDIA driver on your system. Please check …"),
    "an old CUDA driver": RuntimeError("CUDA driver initialization failed, you might not …"),
    "the study storage": StorageError("the study storage x.db is damaged"),
    "the data set": DataError("the data folder is gone"),
}
FAILED = {
    "a NaN loss": TrialFailed("loss became nan at epoch 2, step 3"),
    "a spec value": SpecError("model.dropout: got 2"),
    "a shape mismatch": RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x8 and 9x2)"),
    "an impossible value": ValueError("kernel size can't be greater than actual input size"),
    "a failed assertion": AssertionError("input size mismatch"),
    "CUDA out of memory": torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"),
    "CUDA out of memory (older torch)": RuntimeError("CUDA error: out of memory"),
    "host out of memory": MemoryError(),
}


@pytest.mark.parametrize("exc", FATAL.values(), ids=FATAL.keys())
def test_the_environment_failing_is_fatal(exc: Exception) -> None:
    fatal = fatal_error(exc)
    assert isinstance(fatal, FatalError) and fatal.exit_code == 2
    if not isinstance(exc, FatalError):  # ours are raised as they are
        assert f"{type(exc).__name__}: {exc}" in str(fatal)  # what was raised, then the fix
        assert "then rerun to resume the study" in str(fatal)


@pytest.mark.parametrize("exc", FAILED.values(), ids=FAILED.keys())
def test_the_configuration_failing_fails_its_trial_only(exc: Exception) -> None:
    assert fatal_error(exc) is None


@pytest.mark.parametrize(
    "name", [n for n in FAILED if "out of memory" in n], ids=lambda name: name
)
def test_out_of_memory_is_the_configuration_s_size(name: str) -> None:
    assert is_out_of_memory(FAILED[name])


def test_a_failed_trial_keeps_its_traceback_and_the_search_goes_on(
    tmp_path: Path, digits_root: Path
) -> None:
    # Trial 0 diverges (an absurd learning rate): FAIL; trial 1 trains.
    raw = tiny_spec(
        digits_root,
        tmp_path,
        study={
            "n_trials": 1,
            "try_defaults": False,
            "warm_start": [{"train.lr": 1.0e12}, {"train.lr": 1.0e-3}],
        },
        train={"lr": {"choices": [1.0e-3, 1.0e12]}, "optimizer": "sgd"},
    )
    path = write_spec(tmp_path / "spec.yaml", raw)
    result = runner.invoke(app, ["search", str(path)])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="tiny", storage=load_spec(path).study.storage)
    failed, complete = study.trials
    assert failed.state == TrialState.FAIL and complete.state == TrialState.COMPLETE
    record = TrialRecord.of(failed)
    assert record.fail_reason is not None and "loss became" in record.fail_reason
    assert record.traceback is not None
    assert record.traceback.startswith("Traceback (most recent call last)")
    assert "automl_clf/train/trainer.py" in record.traceback
    assert f"TrialFailed: {record.fail_reason.removeprefix('TrialFailed: ')}" in record.traceback
    assert not record.cut_short and not record.retried_first  # the next run tries new params
    assert not (tmp_path / "studies" / "tiny" / "trial_0000" / "last.pt").exists()


def test_a_fatal_error_stops_the_search_after_one_trial_and_the_rerun_retries_it(
    tmp_path: Path, digits_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A library the trial needs (optuna-dashboard, for its note) cannot be imported, as when
    # it is not installed: every trial would fail the same way, whatever it samples.
    raw = tiny_spec(digits_root, tmp_path, study={"n_trials": 3, "max_consecutive_failures": 5})
    path = write_spec(tmp_path / "spec.yaml", raw)
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "optuna_dashboard", None)
        result = runner.invoke(app, ["search", str(path)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # one line, no traceback
    assert "ModuleNotFoundError" in result.output
    assert "a library autoclf needs is missing or broken" in result.output
    storage = load_spec(path).study.storage
    (trial,) = optuna.load_study(study_name="tiny", storage=storage).trials  # one, not five
    assert trial.state == TrialState.FAIL
    record = TrialRecord.of(trial)
    assert record.fail_reason is not None and "optuna_dashboard" in record.fail_reason
    assert record.traceback is not None and "ModuleNotFoundError" in record.traceback
    assert record.cut_short and record.retried_first
    assert (tmp_path / "studies" / "tiny" / "trial_0000" / "last.pt").is_file()  # kept

    result = runner.invoke(app, ["search", str(path)])  # the library is back
    assert result.exit_code == 0, result.output
    retry = optuna.load_study(study_name="tiny", storage=storage).trials[1]
    assert retry.state == TrialState.COMPLETE and retry.params == trial.params
    assert TrialRecord.of(retry).retry_of == 0
    assert TrialRecord.of(retry).resumed_from_epoch == 3  # from the kept checkpoint
