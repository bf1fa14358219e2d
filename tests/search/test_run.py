"""Searches on real SQLite studies: budgets, resume, interruption and failed trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from automl_clf.cli import app
from automl_clf.search import run_search
from automl_clf.search.objective import QuietObserver
from automl_clf.spec import load_spec
from tests.conftest import read_only, run_autoclf, tiny_spec, write_spec

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


class _Recorder(QuietObserver):
    """A SearchObserver keeping each epoch's learning rate, as the trainer's optimizer had it."""

    def __init__(self) -> None:
        self.lrs: dict[int, list[float]] = {}

    def epoch_done(self, number: int, epoch: object, max_epochs: int) -> None:
        self.lrs.setdefault(number, []).append(epoch.lr)  # type: ignore[attr-defined]


def test_every_kind_of_sampled_value_is_the_one_the_trainer_used(
    tmp_path: Path, digits_root: Path
) -> None:
    from automl_clf.models.factory import build_model, count_parameters
    from automl_clf.spec.config import TrialConfig

    raw = tiny_spec(
        digits_root,
        tmp_path,
        study={"n_trials": 3, "pruner": "none", "sampler": "random"},
        model={
            "dropout": {"low": 0.0, "high": 0.4, "step": 0.1},  # float with a step
            "cnn": {
                "filters": {"choices": [[4], [4, 8]]},  # categorical of lists
                "fc_width": {"low": 8, "high": 32, "step": 8},  # int with a step
                "batch_norm": {"choices": [True, False]},  # bool
            },
        },
        train={
            "epochs": 2,
            "schedule": "constant",  # so each epoch's lr is the sampled lr
            "lr": {"low": 1e-3, "high": 1e-2, "log": True},  # log float
            "optimizer": {"choices": ["sgd", "adamw"]},  # categorical of strings
            "momentum": {"low": 0.5, "high": 0.9},  # conditional: sgd only
        },
    )
    recorder = _Recorder()
    result = run_search(load_spec(write_spec(tmp_path / "s.yaml", raw)), observer=recorder)
    assert result.n_finished == 3
    for trial in result.study.trials:
        config = TrialConfig.model_validate(trial.user_attrs["config"])
        params = trial.params
        assert config.model.dropout == params["model.dropout"]
        assert config.model.cnn is not None
        assert list(config.model.cnn.filters) == json.loads(params["model.cnn.filters"])
        assert config.model.cnn.fc_width == params["model.cnn.fc_width"]
        assert config.model.cnn.batch_norm == params["model.cnn.batch_norm"]
        assert config.train.optimizer == params["train.optimizer"]
        assert config.train.lr == params["train.lr"]
        assert (config.train.momentum is not None) == ("train.momentum" in params)
        assert config.train.momentum == params.get("train.momentum")
        # The trainer used them: its optimizer ran at the sampled lr, and the model it trained
        # had the sampled architecture's parameter count.
        assert recorder.lrs[trial.number] == pytest.approx([params["train.lr"]] * 2)
        model = build_model(config.model, n_classes=3, in_chans=1, image_size=8)
        assert trial.user_attrs["n_params"] == count_parameters(model)


def test_trial_0_tries_the_defaults_then_the_warm_start_list(
    tmp_path: Path, digits_root: Path
) -> None:
    raw = tiny_spec(
        digits_root,
        tmp_path,
        study={"n_trials": 3, "warm_start": [{"train.lr": 0.002, "model.cnn.filters": [8]}]},
        train={"epochs": 1},
    )
    path = write_spec(tmp_path / "spec.yaml", raw)
    assert runner.invoke(app, ["search", str(path)]).exit_code == 0
    spec = load_spec(path)
    trials = optuna.load_study(study_name=spec.study.name, storage=spec.study.storage).trials
    # TrainSpec's default lr (1e-3) lies in the range; dropout's (0.2) too; the filters default
    # ([32, 64]) is not a choice, so the first choice; the policy default (none) is.
    assert trials[0].params == {
        "model.dropout": 0.2,
        "model.cnn.filters": "[4]",
        "train.lr": 1e-3,
        "augment.policy": "none",
    }
    assert trials[1].params["train.lr"] == 0.002
    assert trials[1].params["model.cnn.filters"] == "[8]"


def test_a_changed_search_space_is_refused_unless_forced(spec_file: Path) -> None:
    assert runner.invoke(app, ["search", str(spec_file), "--n-trials", "1"]).exit_code == 0
    raw = yaml.safe_load(spec_file.read_text())
    raw["train"]["lr"] = {"low": 1e-4, "high": 1e-2, "log": True}
    write_spec(spec_file, raw)
    refused = runner.invoke(app, ["search", str(spec_file), "--n-trials", "2"])
    assert refused.exit_code == 1
    assert "search space of study 'tiny' changed" in refused.output
    assert "- train.lr float [0.001, 0.01, log]" in refused.output
    assert "+ train.lr float [0.0001, 0.01, log]" in refused.output
    assert "--force" in refused.output
    assert finished(spec_file) == 1  # nothing ran
    forced = runner.invoke(app, ["search", str(spec_file), "--n-trials", "2", "--force"])
    assert forced.exit_code == 0, forced.output
    assert finished(spec_file) == 2
    again = runner.invoke(app, ["search", str(spec_file), "--n-trials", "3"])
    assert again.exit_code == 0  # the forced space is the study's space now


def test_multi_objective_search_shows_a_pareto_front_and_exports_a_chosen_trial(
    tmp_path: Path, digits_root: Path
) -> None:
    raw = tiny_spec(
        digits_root,
        tmp_path,
        study={"objective": ["accuracy", "n_params"], "sampler": "nsga2", "n_trials": 3},
        train={"epochs": 2},
    )
    del raw["study"]["pruner"]  # multi-objective: no pruner (an explicit one is refused)
    path = write_spec(tmp_path / "spec.yaml", raw)
    validated = runner.invoke(app, ["validate", str(path)])
    assert "Optuna cannot prune multi-objective studies" in validated.output
    result = runner.invoke(app, ["search", str(path)])
    assert result.exit_code == 0, result.output
    assert "Pareto front:" in result.output
    spec = load_spec(path)
    study = optuna.load_study(study_name=spec.study.name, storage=spec.study.storage)
    assert study.metric_names == ["accuracy", "n_params"]  # the dashboard's axis labels
    for trial in study.trials:
        assert trial.values == [trial.user_attrs["val_accuracy"], trial.user_attrs["n_params"]]
        assert trial.intermediate_values == {}  # Optuna cannot report multi-objective steps
    front = runner.invoke(app, ["best", str(path)])
    assert front.exit_code == 0 and "Pareto front" in front.output
    unpicked = runner.invoke(app, ["best", str(path), "--export", str(tmp_path / "x")])
    assert unpicked.exit_code == 1 and "with --trial N" in unpicked.output
    chosen = study.best_trials[0].number
    export = tmp_path / "chosen"
    picked = runner.invoke(
        app, ["best", str(path), "--export", str(export), "--trial", f"{chosen}"]
    )
    assert picked.exit_code == 0, picked.output
    assert (export / "model.safetensors").is_file()


def test_constraints_mark_trials_infeasible_and_best_is_feasible(
    tmp_path: Path, digits_root: Path
) -> None:
    # One conv block of 4 filters: ~1.2k parameters; of 8: ~2.3k. The limit sits between.
    raw = tiny_spec(
        digits_root,
        tmp_path,
        study={
            "n_trials": 3,
            "constraints": {"max_params": 1800},
            "try_defaults": False,
            "warm_start": [{"model.cnn.filters": [8]}, {"model.cnn.filters": [4]}],
        },
        train={"epochs": 2},
    )
    path = write_spec(tmp_path / "spec.yaml", raw)
    assert runner.invoke(app, ["search", str(path)]).exit_code == 0
    spec = load_spec(path)
    study = optuna.load_study(study_name=spec.study.name, storage=spec.study.storage)
    big, small = study.trials[0], study.trials[1]
    assert big.user_attrs["n_params"] > 1800 >= small.user_attrs["n_params"]
    assert big.user_attrs["feasible"] is False and big.constraints["n_params"] > 0
    assert small.user_attrs["feasible"] is True and small.constraints["n_params"] <= 0
    assert study.best_trial.user_attrs["n_params"] <= 1800


class _InterruptAfter(_Recorder):
    """A SearchObserver that presses Ctrl-C (raises KeyboardInterrupt, as the signal handler
    does) once a trial has finished `epoch` epochs: the trial keeps its checkpoint to resume."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def epoch_done(self, number: int, epoch: object, max_epochs: int) -> None:
        if epoch.epoch >= self.epoch:  # type: ignore[attr-defined]
            raise KeyboardInterrupt


def _checkpoint_spec(tmp_path: Path, digits_root: Path, lr: float = 0.01) -> Path:
    raw = tiny_spec(
        digits_root,
        tmp_path,
        study={"n_trials": 1, "pruner": "none"},
        train={"epochs": 3, "lr": lr, "schedule": "constant"},
    )
    return write_spec(tmp_path / "spec.yaml", raw)


def _interrupt_after_epoch_1(path: Path, n_trials: int | None = None) -> None:
    """Search until the next trial has trained one epoch, then Ctrl-C: it keeps its checkpoint."""
    with pytest.raises(KeyboardInterrupt):
        run_search(load_spec(path), n_trials=n_trials, observer=_InterruptAfter(1))


def test_a_new_study_of_the_same_name_never_resumes_the_old_study_s_checkpoint(
    tmp_path: Path, digits_root: Path
) -> None:
    path = _checkpoint_spec(tmp_path, digits_root)
    _interrupt_after_epoch_1(path)
    assert (tmp_path / "studies" / "tiny" / "trial_0000" / "last.pt").is_file()
    # Deleting the study (its file, or from the dashboard) and searching again makes a new study
    # whose trial 0 has the same number and config as the old one, but nothing else in common.
    (tmp_path / "tiny.db").unlink()
    result = run_search(load_spec(path))
    trial = result.study.trials[0]
    assert trial.state == TrialState.COMPLETE
    assert trial.user_attrs["resumed_from_epoch"] == 0
    assert trial.user_attrs["epochs_run"] == 3


def test_a_retried_trial_resumes_its_checkpoint_only_when_its_config_is_unchanged(
    tmp_path: Path, digits_root: Path
) -> None:
    path = _checkpoint_spec(tmp_path, digits_root)
    _interrupt_after_epoch_1(path)
    same = run_search(load_spec(path)).study.trials[1]  # the retry of trial 0, same config
    assert same.user_attrs["retry_of"] == 0 and same.user_attrs["resumed_from_epoch"] == 1

    _interrupt_after_epoch_1(path, n_trials=2)
    changed = _checkpoint_spec(tmp_path, digits_root, lr=0.002)  # not a searched value
    retry = run_search(load_spec(changed), n_trials=2).study.trials[3]
    assert retry.user_attrs["retry_of"] == 2
    assert retry.user_attrs["config"]["train"]["lr"] == 0.002
    assert retry.user_attrs["resumed_from_epoch"] == 0  # trained anew, on its own lr
    assert retry.user_attrs["lr_history"] == pytest.approx([0.002] * 3)


def test_a_study_whose_creation_was_cut_short_is_finished_by_the_next_worker(
    tmp_path: Path, digits_root: Path
) -> None:
    # What a worker stopped right after creating the study leaves: the study, nothing queued.
    path = write_spec(
        tmp_path / "spec.yaml", tiny_spec(digits_root, tmp_path, train={"epochs": 1})
    )
    spec = load_spec(path)
    optuna.create_study(study_name=spec.study.name, storage=spec.study.storage)
    assert runner.invoke(app, ["search", str(path), "--n-trials", "1"]).exit_code == 0
    study = optuna.load_study(study_name=spec.study.name, storage=spec.study.storage)
    assert study.trials[0].params["train.lr"] == 1e-3  # trial 0 tried the defaults after all


@pytest.fixture
def damaged_study(request: pytest.FixtureRequest, spec_file: Path) -> tuple[Path, Path]:
    """A study of one trial whose SQLite file is then damaged: every page after the first
    overwritten, or the file cut short (a disk or copy that failed)."""
    assert runner.invoke(app, ["search", str(spec_file), "--n-trials", "1"]).exit_code == 0
    database = spec_file.parent / "tiny.db"
    data = database.read_bytes()
    if request.param == "corrupt pages":
        database.write_bytes(data[:4096] + b"\xab" * (len(data) - 4096))
    else:
        database.write_bytes(data[:1000])
    return spec_file, database


@pytest.mark.parametrize("damaged_study", ["corrupt pages", "truncated"], indirect=True)
def test_a_damaged_sqlite_study_is_one_line_naming_the_file_and_stays_as_it_was(
    damaged_study: tuple[Path, Path],
) -> None:
    spec_file, database = damaged_study
    before = database.read_bytes()
    for command in (["search", "--n-trials", "2"], ["status"], ["best"]):
        result = runner.invoke(app, [command[0], str(spec_file), *command[1:]])
        assert result.exit_code == 2, result.output
        assert isinstance(result.exception, SystemExit)  # no traceback
        assert f"the study storage {database} is damaged" in result.output
        assert "move it aside" in result.output
        assert "SQLAlchemy URL" not in result.output  # the URL is fine; the file is not
    assert database.read_bytes() == before  # nothing repaired, moved or deleted


@pytest.mark.parametrize("cache", ["elsewhere", "in studies/ (the default)"])
def test_a_read_only_studies_folder_is_one_line_and_exit_2(
    tmp_path: Path, digits_root: Path, cache: str
) -> None:
    """With the default layout the data cache is in studies/ too (studies/cache): the storage
    is checked first, so the message is the storage's, not a word about reading the cache."""
    studies = tmp_path / "studies"
    studies.mkdir()
    raw = tiny_spec(digits_root, studies)
    del raw["study"]["storage"]  # the default: studies/tiny.db beside the spec
    if cache == "elsewhere":
        raw["data"]["cache_dir"] = str(tmp_path / "cache")
    path = write_spec(tmp_path / "spec.yaml", raw)
    with read_only(studies) as prefix:
        done = run_autoclf("search", str(path), prefix=prefix)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "cannot read" not in done.stderr
    assert f"cannot write the study storage {studies / 'tiny.db'}" in done.stderr
    assert "make it and its folder writable" in done.stderr
    assert "Read-only file system" in done.stderr or "Permission denied" in done.stderr


def _limit_file_size(limit: int) -> None:
    """In the child: files may grow to `limit` bytes, past which write() fails with EFBIG (with
    SIGXFSZ ignored, as the kernel then reports it instead of killing the process)."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.slow
def test_a_disk_too_full_for_a_checkpoint_fails_the_trial_with_its_folder_and_exits_2(
    tmp_path: Path, digits_root: Path
) -> None:
    """The disk fills up while a trial writes its checkpoint. A real, unprivileged way to make
    the kernel refuse a write: RLIMIT_FSIZE in the search's process. Files may grow to 1 MB
    (the study database and decode cache stay far below), the checkpoint of a 0.5 M-parameter
    network cannot, and its write fails with EFBIG exactly where a full disk fails with ENOSPC.
    The trial must end FAIL with the folder in its reason (never RUNNING), the command with one
    line and exit 2, and the next run must retry the trial first."""
    raw = tiny_spec(
        digits_root,
        tmp_path,
        study={"n_trials": 1, "pruner": "none"},
        model={"cnn": {"filters": [8], "fc_width": 2048}},
    )
    path = write_spec(tmp_path / "spec.yaml", raw)
    done = subprocess.run(
        [sys.executable, "-m", "automl_clf.cli", "search", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: _limit_file_size(1 << 20),
    )
    folder = tmp_path / "studies" / "tiny" / "trial_0000"
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"cannot write the trial checkpoint in {folder}: File too large" in done.stderr
    study = optuna.load_study(study_name="tiny", storage=load_spec(path).study.storage)
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL  # told, not left RUNNING for the heartbeat
    assert str(folder) in trial.user_attrs["fail_reason"]
    assert not list(folder.glob(".last.pt.*"))  # the torn temporary file is gone

    result = runner.invoke(app, ["search", str(path)])  # room made: the rerun retries it
    assert result.exit_code == 0, result.output
    retry = optuna.load_study(study_name="tiny", storage=load_spec(path).study.storage).trials[1]
    assert retry.user_attrs["retry_of"] == 0 and retry.state == TrialState.COMPLETE


def _slow_to_decode(root: Path, per_class: int, side: int = 3000) -> None:
    """Large but compressible PNGs (a few seconds to decode in all, 100 KB each on disk): one
    encoded image, made distinct per file by a text chunk, so no two files share content."""
    import io
    import struct
    import zlib

    import numpy as np
    from PIL import Image

    ramp = (np.add.outer(np.arange(side), np.arange(side)) % 251).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, format="PNG", compress_level=1)
    data = buffer.getvalue()
    header, rest = data[:33], data[33:]  # the signature and IHDR, then the image
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            body = b"tEXt" + f"id\0{name}{i}".encode()
            chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
            (root / name / f"{i}.png").write_bytes(header + chunk + rest)


def _created(path: Path) -> bool:
    """Whether the study exists with its first trial queued (looked at under the study lock, so
    never while a worker creates the schema or the study)."""
    from automl_clf.search.storage import StudyLock

    spec = load_spec(path)
    assert spec.study.storage is not None and spec.study.name is not None
    if not Path(spec.study.storage.removeprefix("sqlite:///")).exists():
        return False
    with StudyLock(spec.study.storage, spec.study.name).held():
        try:
            return states(path)["WAITING"] > 0
        except KeyError:  # no study yet
            return False


@pytest.mark.slow
def test_sigterm_while_decoding_images_exits_130_and_leaves_the_study_consistent(
    tmp_path: Path,
) -> None:
    _slow_to_decode(tmp_path / "data", per_class=30)
    # the files share their pixels (only their bytes differ): near-duplicates all, by design
    off = {"near_duplicates": "off"}
    path = write_spec(tmp_path / "spec.yaml", tiny_spec(tmp_path / "data", tmp_path, data=off))
    one_cpu = {min(os.sched_getaffinity(0))}  # decoding takes seconds however many cores
    worker = subprocess.Popen(
        [sys.executable, "-m", "automl_clf.cli", "search", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: os.sched_setaffinity(0, one_cpu),
    )
    try:
        deadline = time.monotonic() + 120
        while not _created(path):  # which happens just before the images are decoded
            assert worker.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=60)[0].decode()
    finally:
        worker.kill()
    assert worker.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output
    assert not (tmp_path / "tiny.db-journal").exists()
    counts = states(path)
    assert counts["RUNNING"] == 0 and counts["WAITING"] == 1  # the defaults, still queued
    assert not list((tmp_path / "studies" / "cache").glob("decoded/*/pixels-*.npy"))


def test_a_signal_python_swallows_still_stops_the_search_at_the_next_check() -> None:
    """A handler's KeyboardInterrupt raised inside `__del__` (or a GC callback) is dropped by
    Python ("Exception ignored"); the flag it set still stops the search."""
    import signal as signals

    from automl_clf.search.interrupts import interrupts_raise, raise_if_interrupted

    class SignalledWhileCollected:
        def __del__(self) -> None:
            signals.raise_signal(signals.SIGTERM)

    with interrupts_raise():
        with warnings.catch_warnings():  # pytest reports the dropped exception as a warning
            warnings.simplefilter("ignore")
            SignalledWhileCollected()  # collected at once: the handler runs inside __del__
        with pytest.raises(KeyboardInterrupt):
            raise_if_interrupted()
    raise_if_interrupted()  # after the search: nothing pending
