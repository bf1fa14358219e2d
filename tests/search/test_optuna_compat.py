"""Optuna's internals are reached in one module only, and importing autoclf leaves Optuna's
process-wide logging and warnings alone (an API call quiets them while it runs only)."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import optuna
import pytest

from automl_clf.search.optuna_compat import heartbeat_interval, optuna_quieted, record_heartbeat
from tests.conftest import REPO

PRIVATE = re.compile(r"optuna(\.\w+)*\._\w|\._trial_id\b|\._study_id\b|\bstudy\._storage\b")


def test_only_the_compat_module_reaches_into_optuna_s_private_api() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for folder in ("automl_clf", "bench")
        for path in sorted((REPO / folder).rglob("*.py"))
        if path.name != "optuna_compat.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert offenders == []


def test_heartbeat_interval_is_the_storage_s_or_none(tmp_path: Path) -> None:
    beating = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'x.db'}", heartbeat_interval=7)
    assert heartbeat_interval(beating) == 7
    assert heartbeat_interval(optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'y.db'}")) is None
    assert heartbeat_interval(optuna.storages.InMemoryStorage()) is None


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed")
def test_a_heartbeat_is_recorded_on_the_trial_it_names(tmp_path: Path) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'x.db'}", heartbeat_interval=7)
    study = optuna.create_study(storage=storage, study_name="beats")
    trial = study.ask()
    study_id = storage.get_study_id_from_name("beats")
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    record_heartbeat(storage, trial_id)
    with pytest.raises(TypeError, match="has no heartbeat"):
        record_heartbeat(optuna.storages.InMemoryStorage(), 0)


def test_importing_autoclf_leaves_optuna_s_logging_and_warnings_alone() -> None:
    check = (  # (torch and others add filters of their own at import: only Optuna's count)
        "import warnings, optuna\n"
        "verbosity = optuna.logging.get_verbosity()\n"
        "import automl_clf.search.run, automl_clf.search.storage, automl_clf.job\n"
        "assert optuna.logging.get_verbosity() == verbosity\n"
        "assert not [f for f in warnings.filters if f[2] is optuna.exceptions.ExperimentalWarning]"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr


def test_optuna_is_quiet_inside_an_api_call_and_as_it_was_after() -> None:
    """`optuna_quieted` (the Python API's calls): no experimental warning or info line inside,
    the caller's verbosity and warning filters back after, even when the call fails."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            filters = list(warnings.filters)
            with pytest.raises(RuntimeError, match="the call failed"), optuna_quieted():
                assert optuna.logging.get_verbosity() == optuna.logging.ERROR
                warnings.warn("inside", optuna.exceptions.ExperimentalWarning, stacklevel=1)
                raise RuntimeError("the call failed")
            assert caught == []
            assert warnings.filters == filters
            assert optuna.logging.get_verbosity() == optuna.logging.INFO
            warnings.warn("outside", optuna.exceptions.ExperimentalWarning, stacklevel=1)
            assert [str(w.message) for w in caught] == ["outside"]  # the caller's own, shown
    finally:
        optuna.logging.set_verbosity(verbosity)
