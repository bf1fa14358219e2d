"""Shared fixtures: tiny real data (a few classes of scikit-learn's digits) and tiny specs.

Everything runs on the CPU in seconds: 8 px images, a one-block CNN, two or three epochs.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from automl_clf.search.storage import STORAGES
from tests import postgres

if TYPE_CHECKING:
    from automl_clf.search.objective import QuietObserver

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def _no_network() -> None:
    """No test touches the network or the user's Hugging Face cache: offline, and an empty
    cache of its own (never created unless written). huggingface_hub reads both variables when
    first imported, so its constants are set too; subprocesses inherit the variables. A test
    that needs cached weights builds its own cache (`offline_hub`)."""
    cache = os.path.join(tempfile.gettempdir(), f"autoclf-tests-{os.getpid()}-hf")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_CACHE"] = cache
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True
    constants.HF_HUB_CACHE = cache


_no_network()

REPO = Path(__file__).resolve().parents[1]


def fresh_python(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python ARGS` in a new interpreter, importing this checkout's automl_clf: for what must be
    seen from a process's start (which modules an error path imports)."""
    command = [sys.executable, *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=python_env(), timeout=timeout
    )


def tiny_spec(root: Path, storage_dir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A spec mapping that trains in well under a second per trial; sections override keys."""
    spec: dict[str, Any] = {
        "study": {
            "name": "tiny",
            "storage": f"sqlite:///{storage_dir / 'tiny.db'}",
            "n_trials": 3,
            "seed": 0,
            "pruner": {"kind": "median", "n_startup_trials": 2, "n_warmup_steps": 1},
        },
        "data": {
            "root": str(root),
            "image_size": 8,
            "channels": 1,
            "split": {"val": 0.2, "test": 0.2},
        },
        "model": {
            "backbone": "cnn",
            "dropout": {"low": 0.0, "high": 0.3},
            "cnn": {"filters": {"choices": [[4], [8]]}, "fc_width": 16},
        },
        "train": {
            "epochs": 3,
            "batch_size": 16,
            "lr": {"low": 1e-3, "high": 1e-2, "log": True},
            "early_stopping_patience": None,
        },
        "augment": {"policy": {"choices": ["none", "light"]}},
    }
    for section, values in sections.items():
        spec[section] = {**spec.get(section, {}), **values}
    return spec


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def write_png_bomb(path: Path, side: int = 15000) -> Path:
    """A valid all-black 1-bit PNG of side × side pixels (15000²: 225 M pixels, more than twice
    Pillow's limit) that compresses to ~30 KB: written row block by row block, never held."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then the row's packed bits
    compressor = zlib.compressobj(9)
    idat = [compressor.compress(row * 1000) for _ in range(side // 1000)]
    idat += [compressor.compress(row * (side % 1000)), compressor.flush()]
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit, grayscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"".join(idat))
        + chunk(b"IEND", b"")
    )
    return path


def run_autoclf(*args: str, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """`autoclf ARGS` in a new process of this checkout, run under the command `prefix` (e.g.
    `read_only`'s), its output captured."""
    command = [*(prefix or []), sys.executable, "-m", "automl_clf.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=python_env(), timeout=300)


def python_env() -> dict[str, str]:
    """The environment of a new interpreter that imports this checkout's automl_clf."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


@contextmanager
def read_only(folder: Path) -> Iterator[list[str]]:
    """A command prefix under which `folder` cannot be written, for a command run as a new
    process. chmod binds every user but root, and these tests also run as root: there, a
    read-only bind mount of `folder` onto itself in a mount namespace of the command's own
    (`unshare -m`: EROFS, what a read-only disk gives; nothing outside that process sees it),
    else chmod and `setpriv` dropping the capability to ignore it (EACCES). Skips the test where
    neither is allowed."""
    if os.geteuid() == 0:
        script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
        mounted = ["unshare", "-m", "sh", "-c", script, str(folder)]
        if _cannot_write(folder, mounted):
            yield mounted
            return
    unprivileged = []
    if os.geteuid() == 0:
        unprivileged = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    folder.chmod(0o555)
    try:
        if not _cannot_write(folder, unprivileged):
            pytest.skip("as root, neither a read-only bind mount nor setpriv is allowed here")
        yield unprivileged
    finally:
        folder.chmod(0o755)


def _cannot_write(folder: Path, prefix: list[str]) -> bool:
    probe = [*prefix, "sh", "-c", f"! touch '{folder}/.probe' 2>/dev/null"]
    try:
        return subprocess.run(probe, capture_output=True).returncode == 0
    except OSError:  # no unshare or setpriv
        return False


@contextmanager
def fails_if_blocked(seconds: int = 60) -> Iterator[None]:
    """Turn a hang (e.g. opening a FIFO nobody writes to) into a test failure, not a stuck
    suite: SIGALRM interrupts the blocking call and raises."""

    def hung(signum: int, frame: object) -> None:
        raise AssertionError(f"blocked for {seconds} s (opened a FIFO or special file?)")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three digit classes, 30 real images each (8×8 px)."""
    from automl_clf.datasets import write_digits

    return write_digits(
        tmp_path_factory.mktemp("digits") / "data", classes=[0, 1, 7], per_class=30
    )


@pytest.fixture
def spec_file(tmp_path: Path, digits_root: Path) -> Path:
    return write_spec(tmp_path / "spec.yaml", tiny_spec(digits_root, tmp_path))


def make_checkpoint(folder: Path, backbone: str) -> Path:
    """A local 'pretrained' weights file for `backbone` (a freshly initialised one), as
    safetensors: what a user would point `model.pretrained` at."""
    from safetensors.torch import save_file

    from automl_clf.models.factory import build_model
    from automl_clf.spec.config import ModelConfig

    config = ModelConfig.plain_timm(backbone)
    model = build_model(config, n_classes=4, in_chans=1, image_size=16)
    path = folder / f"{backbone}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face cache holding timm's test_resnet, test_efficientnet and test_vit weights
    (tests/hub.py), laid out as huggingface_hub writes it."""
    from tests.hub import STAND_INS, write_timm_weights

    cache = tmp_path_factory.mktemp("hf-hub")
    for name in STAND_INS:
        write_timm_weights(cache, name)
    return cache


@pytest.fixture
def offline_hub(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`hub_cache` as this process's Hugging Face cache, offline: what HF_HUB_CACHE and
    HF_HUB_OFFLINE=1 give a user's process (huggingface_hub read them at import, so its
    constants are set here; the environment too, for spawned processes)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    return hub_cache


@dataclass(frozen=True)
class Exported:
    """A searched study and its export, shared by the final-model, report and dashboard tests."""

    spec: Path
    folder: Path


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, digits_root: Path) -> Exported:
    """Three trials, then `best --export` over two seeds (train only) with both TTA views."""
    from typer.testing import CliRunner

    from automl_clf.cli import app

    folder = tmp_path_factory.mktemp("export")
    spec = write_spec(
        folder / "spec.yaml",
        tiny_spec(
            digits_root,
            folder,
            study={"n_trials": 3},
            final={"train_on": "train", "seeds": 2, "tta": ["hflip", "crops"]},
        ),
    )
    runner = CliRunner()
    searched = runner.invoke(app, ["search", str(spec)])
    assert searched.exit_code == 0, searched.output
    result = runner.invoke(app, ["best", str(spec), "--export", str(folder / "model")])
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output
    return Exported(spec, folder / "model")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """AUTOCLF_TEST_POSTGRES_URL (`.ci/run` sets it), else a server started here, else skip."""
    url = os.environ.get("AUTOCLF_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    folder = Path(tempfile.mkdtemp(prefix="autoclf-pg-"))
    try:
        url = postgres.start(folder)
        postgres.wait_until_reachable(url)
    except (RuntimeError, OSError) as exc:
        postgres.stop(folder)
        pytest.skip(f"no PostgreSQL could be started ({exc}); install Debian's postgresql")
    try:
        yield url
    finally:
        postgres.stop(folder)


STORAGE_MODES = STORAGES.kinds  # every storage autoclf supports (search/storage.py)


@dataclass(frozen=True)
class StudyStorage:
    """Where a test's study lives: `study.storage` and `study.name` for its spec."""

    url: str
    name: str


@pytest.fixture(params=STORAGE_MODES)
def study_storage(request: pytest.FixtureRequest, tmp_path: Path) -> StudyStorage:
    """One study storage per registered scheme, as Optuna's own storage tests run every check
    over each (`optuna/testing/storages.py`: STORAGE_MODES and StorageSupplier). A database
    server's database is shared, so its study name is unique; PostgreSQL is started here when
    it can be, another server is reached at AUTOCLF_TEST_<SCHEME>_URL; each skips, saying why,
    without one."""
    mode = request.param
    if mode == "sqlite":
        return StudyStorage(f"sqlite:///{tmp_path / 'studies' / 'tiny.db'}", "tiny")
    if mode == "journal":
        return StudyStorage(f"journal:{tmp_path / 'studies' / 'tiny.log'}", "tiny")
    if mode == "postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        variable = f"AUTOCLF_TEST_{mode.upper()}_URL"
        url = os.environ.get(variable, "")
        if not url:
            pytest.skip(f"no {mode} server for the tests: set {variable} to a database URL")
    return StudyStorage(url, f"tiny-{uuid.uuid4().hex}")


@dataclass(frozen=True)
class Ensembled:
    """A study of plain CNNs and `test_resnet`s (two normalisations) and its ensemble export."""

    spec: Path
    folder: Path
    output: str  # what `best --export` printed


@pytest.fixture(scope="session")
def ensembled(tmp_path_factory: pytest.TempPathFactory, digits_root: Path) -> Ensembled:
    """Three complete trials (trial 1 a `test_resnet`, the others the plain CNN), exported with
    `final.ensemble: 4` (one more than there are) with equal weights, as searched (`retrain:
    never`), with TTA."""
    from typer.testing import CliRunner

    from automl_clf.cli import app

    folder = tmp_path_factory.mktemp("ensemble")
    spec = write_spec(
        folder / "spec.yaml",
        tiny_spec(
            digits_root,
            folder,
            study={
                "n_trials": 3,
                "pruner": "none",  # all three complete
                "warm_start": [{"model.backbone": "test_resnet"}],  # trial 1, after the defaults
            },
            model={"backbone": {"choices": ["cnn", "test_resnet"]}},
            # equal weights: all three members whatever the selection would choose, so the
            # ensemble's mechanics are tested on three (tests/final/test_selection.py: selected)
            final={
                "ensemble": 4,
                "ensemble_weights": "equal",
                "retrain": "never",
                "tta": ["hflip"],
            },
        ),
    )
    runner = CliRunner()
    searched = runner.invoke(app, ["search", str(spec)])
    assert searched.exit_code == 0, searched.output
    result = runner.invoke(app, ["best", str(spec), "--export", str(folder / "model")])
    assert result.exit_code == 0, result.output
    return Ensembled(spec, folder / "model", result.output)


class SteppedClock:
    """A clock that only moves when told: `jump()` puts it past any deadline."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def jump(self) -> None:
        self.now += 10**6


def jump_at(clock: SteppedClock, *, epoch: int | None = None) -> QuietObserver:
    """A search observer that moves `clock` past the deadline at one moment of a trial: when
    it starts (`epoch` None) or once `epoch` (1-based) is done."""
    from automl_clf.search.objective import QuietObserver

    class JumpAt(QuietObserver):
        def trial_started(self, number: int, params: dict[str, Any], config: Any) -> None:
            if epoch is None:
                clock.jump()

        def epoch_done(self, number: int, result: Any, max_epochs: int) -> None:
            if result.epoch == epoch:
                clock.jump()

    return JumpAt()


CUT_EPOCHS = 2  # epochs `deadline_study`'s cut trial ran, of DEADLINE_STUDY_EPOCHS
DEADLINE_STUDY_EPOCHS = 5


@pytest.fixture(scope="session")
def deadline_study(tmp_path_factory: pytest.TempPathFactory, digits_root: Path) -> Path:
    """The spec of a SQLite study as a time budget leaves it (what issue 17 saw): trial #0 cut
    by the budget's deadline after CUT_EPOCHS of DEADLINE_STUDY_EPOCHS epochs (a real search
    on a clock the test moves), trial #1 stopped by the pruner after its first epoch, worse
    (written through Optuna's API, as the objective writes a pruned trial). No trial is
    complete, and no trial must be called pruned but #1."""
    import optuna

    from automl_clf.search.budget import Budget
    from automl_clf.search.run import run_search
    from automl_clf.spec import load_spec

    folder = tmp_path_factory.mktemp("deadline")
    raw = tiny_spec(digits_root, folder, train={"epochs": DEADLINE_STUDY_EPOCHS})
    path = write_spec(folder / "spec.yaml", raw)
    clock = SteppedClock()
    observer = jump_at(clock, epoch=CUT_EPOCHS)
    result = run_search(load_spec(path), budget=Budget.start(60, clock), observer=observer, jobs=1)
    (cut,) = result.study.trials
    assert cut.state == optuna.trial.TrialState.PRUNED
    assert cut.user_attrs["stopped_by"] == "deadline"
    worse = max(cut.intermediate_values.values()) + 1.0
    attrs = {k: cut.user_attrs[k] for k in ("config", "worker")}
    pruned = optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED,
        params=cut.params,
        distributions=cut.distributions,
        intermediate_values={1: worse},
        user_attrs={**attrs, "val_loss": worse, "epochs_run": 1, "train_seconds": 3.0},
    )
    result.study.add_trial(pruned)
    return path
