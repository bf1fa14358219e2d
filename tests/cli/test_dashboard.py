"""optuna-dashboard on a real study: the per-trial notes and confusion-matrix artifacts, served
over HTTP by `autoclf dashboard`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta
from optuna.trial import TrialState
from typer.testing import CliRunner

from automl_clf.cli import app, is_loopback
from automl_clf.report.metrics import metrics_dict
from automl_clf.report.trial import ARTIFACT_STORE_DIR, CONFUSION_FILE, NOTE_CLASSES, trial_note
from automl_clf.search.storage import trial_artifacts_dir
from automl_clf.spec import load_spec
from automl_clf.train.metrics import summarise
from tests.conftest import Exported

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_each_complete_trial_stores_its_confusion_matrix(exported: Exported) -> None:
    spec = load_spec(exported.spec)
    assert spec.study.storage and spec.study.name and spec.study.artifacts
    storage = optuna.storages.RDBStorage(spec.study.storage)
    study = optuna.load_study(study_name=spec.study.name, storage=storage)
    artifacts = spec.study.artifacts
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) >= 2
    for trial in complete:
        (meta,) = get_all_artifact_meta(trial, storage=storage)
        assert meta.filename == CONFUSION_FILE and meta.mimetype == "image/png"
        stored = artifacts / ARTIFACT_STORE_DIR / meta.artifact_id
        assert stored.read_bytes().startswith(PNG_MAGIC)
        assert (trial_artifacts_dir(artifacts, trial.number) / CONFUSION_FILE).is_file()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bytes(response.read())


@pytest.fixture
def dashboard(exported: Exported) -> Iterator[str]:
    """`autoclf dashboard` in its own process on a free port; yields its base URL."""
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "automl_clf.cli",
        "dashboard",
        str(exported.spec),
        "--port",
        str(port),
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                output = server.stdout.read().decode() if server.stdout else ""
                pytest.fail(f"the dashboard exited with {server.returncode}: {output}")
            try:
                _get(base + "/api/meta")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail("the dashboard did not answer within 90 s")
                time.sleep(0.3)
        yield base
    finally:
        os.kill(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(server.pid, signal.SIGKILL)
            server.wait()
        if server.stdout:
            server.stdout.close()


def test_dashboard_serves_the_study_its_notes_and_artifacts(
    exported: Exported, dashboard: str
) -> None:
    studies = json.loads(_get(dashboard + "/api/studies"))["study_summaries"]
    (study,) = [s for s in studies if s["study_name"] == "tiny"]
    detail: dict[str, Any] = json.loads(_get(f"{dashboard}/api/studies/{study['study_id']}"))
    assert detail["objective_names"] == ["val_loss"]  # not "Objective 0"
    complete = [t for t in detail["trials"] if t["state"] == "Complete"]
    assert complete, detail["trials"]
    for trial in complete:
        note = trial["note"]["body"]
        assert f"Trial #{trial['number']}" in note and "| class | precision |" in note
        assert all(f"| {name} |" in note for name in ("0", "1", "7"))
        (artifact,) = trial["artifacts"]
        png = _get(
            f"{dashboard}/artifacts/{study['study_id']}/{trial['trial_id']}/"
            f"{artifact['artifact_id']}"
        )
        assert png.startswith(PNG_MAGIC)


def test_dashboard_warns_before_listening_beyond_this_machine(exported: Exported) -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never local, so binding fails after the warning.
    result = runner.invoke(
        app, ["dashboard", str(exported.spec), "--host", "192.0.2.1", "--port", str(_free_port())]
    )
    assert result.exit_code == 1
    assert "anyone who can reach this machine" in result.output
    assert "cannot listen on 192.0.2.1" in result.output


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("example.org", False),
    ],
)
def test_only_loopback_addresses_count_as_local(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_dashboard_without_a_study_says_how_to_make_one(spec_file: Path) -> None:
    result = runner.invoke(app, ["dashboard", str(spec_file)])
    assert result.exit_code == 1
    assert "run `autoclf search SPEC` first" in result.output


def test_a_note_with_many_classes_lists_the_weakest() -> None:
    n = NOTE_CLASSES + 10
    labels = np.repeat(np.arange(n), 2)
    probabilities = np.eye(n)[labels]
    probabilities[1::2][:5] = np.roll(probabilities[1::2][:5], 1, axis=1)  # 5 classes half wrong
    note = trial_note(
        7, metrics_dict(summarise(0.5, probabilities, labels), list(map(str, range(n))))
    )
    assert f"The {NOTE_CLASSES} classes with the lowest F1, of {n}:" in note
    rows = [
        line for line in note.splitlines() if line.startswith("| ") and "precision" not in line
    ]
    assert len(rows) == NOTE_CLASSES
    assert {row.split(" | ")[0][2:] for row in rows[:5]} == {"0", "1", "2", "3", "4"}
