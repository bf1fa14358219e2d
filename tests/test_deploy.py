"""deploy/local-cluster.sh, the README's recipe for one study over several workers: a real
PostgreSQL server from Debian's binaries (deploy/postgres.py) and real `autoclf search`
processes, run as a user runs them. Skips, saying why, where PostgreSQL's binaries are missing
(`.ci/run` installs them)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from automl_clf.search.storage import StudyLock, open_storage
from tests import postgres
from tests.conftest import REPO, tiny_spec, write_spec

SCRIPT = REPO / "deploy" / "local-cluster.sh"
ENV = {
    **os.environ,
    "AUTOCLF": f"{sys.executable} -m automl_clf.cli",  # this checkout, not an installed autoclf
    "PYTHON": sys.executable,
    "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    "NO_ALBUMENTATIONS_UPDATE": "1",
}


@pytest.fixture
def cluster_dir() -> Iterator[Path]:
    """A folder under /tmp: as root, the server runs as `postgres`, which cannot enter pytest's
    private tmp_path."""
    for name in ("initdb", "pg_ctl", "createdb"):
        try:
            postgres.binary(name)
        except RuntimeError as exc:
            pytest.skip(str(exc))
    top = Path(tempfile.mkdtemp(prefix="autoclf-cluster-test-"))
    top.chmod(0o755)
    try:
        yield top / "cluster"
    finally:
        postgres.stop(top / "cluster" / "postgres")
        shutil.rmtree(top, ignore_errors=True)


def cluster_spec(tmp_path: Path, digits_root: Path, **study: Any) -> Path:
    spec = tiny_spec(
        digits_root,
        tmp_path,
        study={"name": "cluster", "pruner": {"kind": "none"}, **study},
        train={"epochs": 2},
    )
    del spec["study"]["storage"]  # the recipe passes its server's URL to every worker
    return write_spec(tmp_path / "spec.yaml", spec)


def start_recipe(*args: str) -> subprocess.Popen[str]:
    """deploy/local-cluster.sh ARGS, its stdout and stderr together as text."""
    return subprocess.Popen(
        ["bash", str(SCRIPT), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    )


def finished_by_worker(url: str, name: str) -> tuple[dict[TrialState, int], dict[str, int]]:
    """The study's trials counted by state, and its finished trials counted by worker."""
    with StudyLock(url, name).held():  # workers may be creating the schema right now
        storage = open_storage(url)
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    by_state = {state: sum(t.state == state for t in trials) for state in TrialState}
    workers: dict[str, int] = {}
    for trial in trials:
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            worker = str(trial.user_attrs["worker"])
            workers[worker] = workers.get(worker, 0) + 1
    return by_state, workers


def refuses_connections(url: str) -> bool:
    host, port = url.split("@", 1)[1].split("/", 1)[0].split(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return True
    return False


@pytest.mark.slow
def test_the_recipe_runs_one_study_over_three_workers_and_stops_its_server(
    tmp_path: Path, digits_root: Path, cluster_dir: Path
) -> None:
    spec = cluster_spec(tmp_path, digits_root, n_trials=6)
    script = start_recipe("--dir", str(cluster_dir), "--gpus", "0,1", str(spec), "3")
    output = script.communicate(timeout=600)[0]
    assert script.returncode == 0, output
    # one worker per GPU, round robin (no GPU here: the workers fall back to the CPU)
    assert ", GPU 0, " in output and ", GPU 1, " in output
    assert "worker 2: pid" in output and output.count(", GPU 0, ") == 2
    assert "Per worker" in output  # `autoclf status` ran against the study
    server = cluster_dir / "postgres"
    url = (server / "url").read_text()
    assert "stopped the PostgreSQL server" in output
    assert not postgres.running(server) and refuses_connections(url)

    # The folder is kept: its server serves the finished study again.
    url = postgres.start(server)
    by_state, workers = finished_by_worker(url, "cluster")
    assert by_state[TrialState.COMPLETE] + by_state[TrialState.PRUNED] == 6, by_state
    assert by_state[TrialState.RUNNING] == 0 and by_state[TrialState.WAITING] == 0, by_state
    assert by_state[TrialState.FAIL] == 0, by_state
    assert len(workers) >= 2, workers  # the trials really were shared
    # ...by the processes the script started and waited for (setsid and env exec them)
    assert {int(worker.rsplit(":", 1)[1]) for worker in workers} <= set(worker_pids(output))


def worker_pids(output: str) -> list[int]:
    """The pids of the script's `worker <i>: pid <pid>, ...` lines."""
    return [
        int(line.split("pid ", 1)[1].split(",", 1)[0])
        for line in output.splitlines()
        if line.startswith("worker ") and ": pid " in line
    ]


@pytest.mark.slow
def test_an_interrupted_recipe_stops_workers_and_server_and_removes_its_folder(
    tmp_path: Path, digits_root: Path, cluster_dir: Path
) -> None:
    spec = cluster_spec(tmp_path, digits_root, n_trials=50)
    script = start_recipe("--dir", str(cluster_dir), "--remove", str(spec), "2")
    assert script.stdout is not None
    url, pids = "", []
    while len(pids) < 2:
        line = script.stdout.readline()
        assert line, f"the script ended early (exit {script.wait()})"
        if line.startswith("PostgreSQL at "):
            url = line.split()[2]
        else:
            pids += worker_pids(line)
    deadline = time.monotonic() + 240
    while True:  # interrupt it with trials running
        try:
            by_state, _ = finished_by_worker(url, "cluster")
        except KeyError:  # no study yet
            by_state = {TrialState.RUNNING: 0}
        if by_state[TrialState.RUNNING] >= 1:
            break
        assert time.monotonic() < deadline, "no trial started"
        time.sleep(0.5)
    script.send_signal(signal.SIGTERM)
    rest = script.communicate(timeout=300)[0]
    assert script.returncode == 130, rest
    assert "stopped the PostgreSQL server" in rest
    assert refuses_connections(url)
    assert not cluster_dir.exists()  # --remove
    for pid in pids:  # no worker outlives the script
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_the_compose_file_runs_postgres_and_scalable_workers() -> None:
    """deploy/compose.yaml cannot run here (no Docker engine): this only checks its shape."""
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "worker"} <= set(services)
    worker = services["worker"]
    assert worker["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "search" in worker["command"]
    assert "@postgres:5432/" in " ".join(worker["command"])
