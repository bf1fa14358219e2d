"""`train.device` and `--device` (train/device.py): the forms a device takes, the override on
search, run, best and predict, and a device this machine lacks as one line and exit 2 before
any trial. Only the CPU is here: the CUDA paths are checked as errors."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from typer.testing import CliRunner

from automl_clf.cli import app
from automl_clf.errors import DeviceError, SpecError
from automl_clf.search.record import TrialRecord
from automl_clf.spec import parse_spec
from automl_clf.train.device import helper_device, resolve_device
from tests.conftest import Exported, tiny_spec, write_spec

runner = CliRunner()
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_the_spec_takes_each_form_of_device(
    device: str, digits_root: Path, tmp_path: Path
) -> None:
    spec = parse_spec(
        tiny_spec(digits_root, tmp_path, train={"device": device}), base_dir=tmp_path
    )
    assert spec.train.device == device


@pytest.mark.parametrize("device", ["gpu", "CUDA", "cuda:", "cuda:one", "cpu:0", "mps"])
def test_an_unknown_device_lists_the_forms(device: str, digits_root: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(tiny_spec(digits_root, tmp_path, train={"device": device}), base_dir=tmp_path)
    assert str(error.value) == (
        f"train.device: unknown device {device!r}: use auto, cpu, cuda or cuda:N (N: a GPU's "
        "index among those torch sees, from 0; e.g. cuda:1)"
    )


def test_cpu_and_auto_resolve_here() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert helper_device("cpu", 3) == "cpu"  # an explicit device is every process's


def test_the_cpu_computes_subnormals_as_zero() -> None:
    """A subnormal float32 (below 1.2e-38) costs x86 a microcode assist per operation; a
    network that reaches them trains 10-100x slower (a retrain measured 223 s against 14 s).
    Resolving the CPU as a run's device flushes them on the training thread."""
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero mode")
    tiny = torch.tensor([1e-39], dtype=torch.float32)
    assert (tiny * 1.5).item() != 0.0  # without the mode, subnormals are computed
    resolve_device("cpu")
    assert (tiny * 1.5).item() == 0.0


@no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_says_why_and_what_to_use(device: str) -> None:
    with pytest.raises(DeviceError) as error:
        resolve_device(device)
    message = str(error.value)
    assert message.startswith(f"device {device!r} asked for, but ")
    assert message.endswith(
        "; use --device cpu (or train.device: auto, which trains on the CPU here)"
    )
    assert helper_device("auto", 1) == "auto"  # no GPUs to spread helpers over


@pytest.mark.parametrize("command", ["search", "run", "best"])
def test_a_bad_device_option_is_one_line_and_exit_2(command: str, spec_file: Path) -> None:
    result = runner.invoke(app, [command, str(spec_file), "--device", "gpu0"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: --device: unknown device 'gpu0': use auto, cpu, cuda or cuda:N (N: a GPU's "
        "index among those torch sees, from 0; e.g. cuda:1)"
    ]


def trials(spec: Path) -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{spec.parent / 'tiny.db'}"
    try:
        return optuna.load_study(study_name="tiny", storage=storage).trials
    except KeyError:  # no such study: nothing was started
        return []


@no_cuda
@pytest.mark.parametrize("command", ["search", "run"])
def test_cuda_here_stops_before_any_trial(command: str, spec_file: Path) -> None:
    result = runner.invoke(app, [command, str(spec_file), "--device", "cuda"])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("error: device 'cuda' asked for, but")
    assert trials(spec_file) == []


def test_device_option_overrides_the_spec(tmp_path: Path, digits_root: Path) -> None:
    """The spec asks for a GPU this machine lacks; --device cpu runs it here."""
    raw = tiny_spec(digits_root, tmp_path, study={"n_trials": 1}, train={"device": "cuda:7"})
    spec = write_spec(tmp_path / "spec.yaml", raw)
    result = runner.invoke(app, ["search", str(spec), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    (trial,) = trials(spec)
    config = TrialRecord.of(trial).config
    assert config is not None and config["train"]["device"] == "cpu"


@no_cuda
def test_best_on_a_missing_gpu_stops_before_retraining(exported: Exported, tmp_path: Path) -> None:
    out = tmp_path / "export"
    result = runner.invoke(
        app, ["best", str(exported.spec), "--export", str(out), "--device", "cuda:0"]
    )
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: device 'cuda:0' asked for, but")
    assert not out.exists()


def test_predict_runs_on_the_device_asked_for(exported: Exported, digits_root: Path) -> None:
    image = next(digits_root.rglob("*.png"))
    result = runner.invoke(app, ["predict", str(exported.folder), str(image), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    bad = runner.invoke(app, ["predict", str(exported.folder), str(image), "--device", "tpu"])
    assert bad.exit_code == 2
    assert bad.stderr.startswith("error: --device: unknown device 'tpu'")


@no_cuda
def test_predict_on_a_missing_gpu_is_one_line(exported: Exported, digits_root: Path) -> None:
    image = next(digits_root.rglob("*.png"))
    result = runner.invoke(app, ["predict", str(exported.folder), str(image), "--device", "cuda"])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("error: device 'cuda' asked for, but")


def test_a_checkpoint_resumes_on_another_device(digits_root: Path, tmp_path: Path) -> None:
    """A trial cut short on one device and retried on another (`--device`, or another GPU's
    helper process) resumes its checkpoint: where it runs is not what it is."""
    from automl_clf.data import load_dataset
    from automl_clf.spec import FixedParams, resolve
    from automl_clf.train import train_config

    raw = tiny_spec(digits_root, tmp_path, train={"epochs": 2, "device": "cpu"})
    spec = parse_spec(raw, base_dir=tmp_path)
    fixed = {"train.lr": 0.01, "augment.policy": "none", "model.dropout": 0.0}
    config = resolve(spec, FixedParams({**fixed, "model.cnn.filters": "[4]"}))
    dataset, folder = load_dataset(spec.data), tmp_path / "checkpoint"
    train_config(config, dataset, checkpoint_dir=folder, max_epochs=1)  # "killed" after epoch 1
    moved = config.model_copy(update={"train": config.train.model_copy(update={"device": "auto"})})
    resumed = train_config(moved, dataset, checkpoint_dir=folder).fit
    assert resumed.resumed_from_epoch == 1 and resumed.epochs_run == 2


def test_the_api_load_spec_takes_the_device_as_the_cli_does(
    tmp_path: Path, digits_root: Path
) -> None:
    import automl_clf

    raw = tiny_spec(digits_root, tmp_path, train={"device": "cuda:7"})
    spec = automl_clf.load_spec(write_spec(tmp_path / "spec.yaml", raw), device="cpu")
    assert spec.train.device == "cpu"
    with pytest.raises(SpecError, match="device"):
        automl_clf.load_spec(tmp_path / "spec.yaml", device="gpu")
