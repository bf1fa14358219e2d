"""Several workers on one study (real processes, real SQLite and PostgreSQL), and a worker killed
with SIGKILL mid-trial on every storage (SQLite, journal file, PostgreSQL, as one suite): budgets
add up exactly and nothing is left RUNNING or WAITING."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from automl_clf.cli import app
from automl_clf.search.record import INTERRUPTED, TrialRecord
from automl_clf.search.storage import open_storage
from automl_clf.search.workers import join_helpers, last_words, start_helpers
from automl_clf.spec import load_spec
from tests.conftest import StudyStorage, tiny_spec, write_spec

runner = CliRunner()
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}


def load(path: Path) -> optuna.Study:
    spec = load_spec(path)
    assert spec.study.storage is not None and spec.study.name is not None
    return optuna.load_study(study_name=spec.study.name, storage=open_storage(spec.study.storage))


def start_worker(path: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "automl_clf.cli", "search", str(path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=ENV,
    )


def run_workers(path: Path, n: int) -> list[str]:
    """Start `n` searches on one study at once; each must exit 0."""
    workers = [start_worker(path) for _ in range(n)]
    outputs = []
    for worker in workers:
        output = worker.communicate(timeout=300)[0].decode()
        assert worker.returncode == 0, output
        outputs.append(output)
    return outputs


def assert_exact(study: optuna.Study, target: int) -> None:
    """Exactly `target` finished trials, none running or queued, trial numbers unique."""
    trials = study.get_trials(deepcopy=False)
    by_state = {s: sum(t.state == s for t in trials) for s in TrialState}
    assert by_state[TrialState.COMPLETE] + by_state[TrialState.PRUNED] == target, by_state
    assert by_state[TrialState.RUNNING] == 0 and by_state[TrialState.WAITING] == 0, by_state
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(numbers)))


def worker_spec(root: Path, folder: Path, **study: Any) -> dict[str, Any]:
    return tiny_spec(
        root,
        folder,
        study={"n_trials": 8, "pruner": {"kind": "none"}, **study},
        train={"epochs": 2},
    )


def assert_shared_without_errors(study: optuna.Study, outputs: list[str]) -> None:
    assert not any(t.state == TrialState.FAIL for t in study.trials), [
        t.user_attrs.get("fail_reason") for t in study.trials
    ]
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers) >= 2, outputs  # the trials really were shared


@pytest.mark.slow
def test_four_processes_extending_one_sqlite_study_add_up_exactly(
    tmp_path: Path, digits_root: Path
) -> None:
    spec = worker_spec(digits_root, tmp_path, n_trials=2)
    path = write_spec(tmp_path / "spec.yaml", spec)
    assert runner.invoke(app, ["search", str(path)]).exit_code == 0
    spec["study"]["n_trials"] = 8
    write_spec(path, spec)
    outputs = run_workers(path, 4)
    study = load(path)
    assert_exact(study, 8)
    assert_shared_without_errors(study, outputs)
    assert any("PostgreSQL" in output for output in outputs)  # SQLite's limits are said
    result = runner.invoke(app, ["status", str(path)])
    assert result.exit_code == 0, result.output
    assert "Per worker" in result.output
    for worker in {t.user_attrs["worker"] for t in study.trials}:
        assert worker in result.output


@pytest.mark.slow
def test_four_processes_creating_one_postgresql_study_add_up_exactly(
    tmp_path: Path, digits_root: Path, postgres_url: str
) -> None:
    name = f"workers-{os.getpid()}-{time.time_ns()}"
    spec = worker_spec(digits_root, tmp_path, storage=postgres_url, name=name)
    path = write_spec(tmp_path / "spec.yaml", spec)
    outputs = run_workers(path, 4)  # all four start on a study (and schema) that does not exist
    study = load(path)
    assert_exact(study, 8)
    assert_shared_without_errors(study, outputs)
    # The study was created once, so its first trial (the spec's defaults) was queued once.
    defaults = study.trials[0].params
    assert sum(t.params == defaults for t in study.trials) == 1


def _wait_for_reports(path: Path, worker: subprocess.Popen[bytes], n_epochs: int) -> int:
    """The number of the running trial once it has reported `n_epochs` epochs."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert worker.poll() is None, worker.stdout.read().decode() if worker.stdout else ""
        try:
            running = load(path).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        except KeyError:  # the study does not exist yet
            running = []
        if running and len(running[0].intermediate_values) >= n_epochs:
            return running[0].number
        time.sleep(0.1)
    raise AssertionError("no trial reported in time")


@pytest.mark.slow
def test_a_killed_worker_s_trial_is_retried_and_the_study_completes_exactly(
    tmp_path: Path, digits_root: Path, study_storage: StudyStorage
) -> None:
    spec = tiny_spec(
        digits_root,
        tmp_path,
        study={
            "storage": study_storage.url,
            "name": study_storage.name,
            "n_trials": 2,
            "pruner": {"kind": "none"},
            "heartbeat_interval": 1,
            "grace_period": 3,
        },
        train={"epochs": 30},
    )
    path = write_spec(tmp_path / "spec.yaml", spec)
    worker = start_worker(path)
    killed = _wait_for_reports(path, worker, 2)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    assert load(path).trials[killed].state == TrialState.RUNNING  # nobody could say otherwise

    # A restarted worker finds the dead trial by its heartbeat and retries it, same params.
    result = runner.invoke(app, ["search", str(path)])
    assert result.exit_code == 0, result.output
    study = load(path)
    assert_exact(study, 2)
    dead = study.trials[killed]
    assert dead.state == TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert retry.user_attrs["config"] == dead.user_attrs["config"]
    # ...and resumes from the dead trial's last epoch checkpoint: no epoch is trained twice
    assert retry.user_attrs["resumed_from_epoch"] >= 2
    assert retry.user_attrs["epochs_run"] == 30
    result = runner.invoke(app, ["status", str(path)])
    assert "worker lost" in result.output  # the dead trial's reason, derived from its heartbeat


def test_a_journal_file_study_runs_and_resumes(tmp_path: Path, digits_root: Path) -> None:
    journal = f"journal:{tmp_path / 'studies' / 'tiny.log'}"
    spec = worker_spec(digits_root, tmp_path, n_trials=2, storage=journal)
    path = write_spec(tmp_path / "spec.yaml", spec)
    assert runner.invoke(app, ["search", str(path)]).exit_code == 0
    result = runner.invoke(app, ["search", str(path), "--n-trials", "3"])
    assert result.exit_code == 0, result.output
    assert_exact(load(path), 3)


def test_jobs_run_trials_in_helper_processes_and_add_up_exactly(
    tmp_path: Path, digits_root: Path
) -> None:
    """`--jobs 2`: one command, two processes on one study; n_trials holds across them.

    Each trial trains long enough (40 epochs: 3–4 s a trial on a 2-core machine at a load of
    6) that the helper, which takes seconds to start (a new interpreter importing torch: about
    13 s there), joins before this process has run all six (at 12 epochs, 2 s a trial, it
    sometimes did not)."""
    spec = worker_spec(digits_root, tmp_path, n_trials=6)
    spec["train"]["epochs"] = 40
    path = write_spec(tmp_path / "spec.yaml", spec)
    result = runner.invoke(app, ["search", str(path), "--jobs", "2"])
    assert result.exit_code == 0, result.output
    assert "other workers share this SQLite study" not in result.output  # they are its own
    study = load(path)
    assert_exact(study, 6)
    assert_shared_without_errors(study, [result.output])


def test_a_helper_that_fails_at_start_is_reported_with_its_error(
    tmp_path: Path, digits_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The caller learns of a helper's failure (its exit code and why: its exception) and
    relays its output to stderr, rather than carrying on alone without a word."""
    root = Path(shutil.copytree(digits_root, tmp_path / "data"))
    spec = load_spec(write_spec(tmp_path / "spec.yaml", worker_spec(root, tmp_path)))
    shutil.rmtree(root)  # the helper cannot even read its spec: the data folder is gone
    helpers = start_helpers(spec, 1, None, None, None)
    said = join_helpers(helpers)
    assert len(said) == 1, said
    assert f"search helper 1 (pid {helpers[0].pid}) ended with exit code 1" in said[0]
    assert "ValidationError: 1 validation error for ResolvedSpec" in said[0]
    assert "folder not found" in capsys.readouterr().err  # its traceback, relayed
    assert join_helpers(helpers) == []  # said once


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        (["error: (search helper 7) no images", ""], "error: (search helper 7) no images"),
        (
            [
                "noise",
                "Traceback (most recent call last):",
                '  File "x.py", line 1',
                "    f()",
                "ValueError: 1 error for Spec",
                "data.root",
                "  folder not found",
            ],
            "ValueError: 1 error for Spec",
        ),
        ([], ""),
    ],
)
def test_last_words_are_the_error_line_or_the_exception(lines: list[str], words: str) -> None:
    assert last_words(lines) == words


@pytest.mark.slow
def test_a_helper_whose_caller_is_gone_stops_its_trial_as_interrupted(
    tmp_path: Path, digits_root: Path
) -> None:
    """The caller holds the helper's stdin open while it lives; when the pipe closes (the
    caller died without stopping it) the helper stops as SIGTERM stops it."""
    spec_map = worker_spec(digits_root, tmp_path, n_trials=1)
    spec_map["train"]["epochs"] = 10_000  # never ends by itself
    path = write_spec(tmp_path / "spec.yaml", spec_map)
    helpers = start_helpers(load_spec(path), 1, None, None, None)
    helper = helpers[0]
    worker = f"{os.uname().nodename}:{helper.pid}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert helper.process.poll() is None, "\n".join(helper.tail)
            try:
                trials = load(path).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            except KeyError:  # the study does not exist yet
                trials = []
            if any(TrialRecord.of(t).worker == worker for t in trials):
                break
            time.sleep(0.2)
        assert helper.process.stdin is not None
        helper.process.stdin.close()
        assert helper.process.wait(timeout=120) == 130
    finally:
        if helper.process.poll() is None:
            helper.process.kill()
    (trial,) = load(path).trials
    assert trial.state == TrialState.FAIL
    assert TrialRecord.of(trial).fail_reason == INTERRUPTED


def test_a_helper_says_nothing_of_an_interrupt_that_lands_in_a_finalizer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SIGTERM to an idle helper raised inside a weakref callback, and `make demo` printed
    "Exception ignored in … KeyboardInterrupt: signal 15" above the final step."""
    import weakref

    from automl_clf.search.workers import quiet_interrupts

    seen: list[type[BaseException]] = []
    previous = sys.unraisablehook
    sys.unraisablehook = quiet_interrupts(lambda u: seen.append(type(u.exc_value)))
    try:

        class Owner:
            pass

        def interrupted(_: object) -> None:
            raise KeyboardInterrupt("signal 15")

        def failed(_: object) -> None:
            raise ValueError("a real error")

        owner = Owner()
        refs = [weakref.ref(owner, interrupted), weakref.ref(owner, failed)]
        del owner  # both callbacks run now, each raising where nothing can catch it
        assert len(refs) == 2
    finally:
        sys.unraisablehook = previous
    assert seen == [ValueError]  # the interrupt said nothing; the real error still goes on
    assert "KeyboardInterrupt" not in capsys.readouterr().err
