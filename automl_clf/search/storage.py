"""Study storage: SQLite under studies/ by default, any SQLAlchemy URL (PostgreSQL for several
machines) otherwise.

Every storage runs Optuna's heartbeat: a trial whose process died (kill -9, a lost machine) is
marked FAIL once its heartbeat is `GRACE_PERIOD` seconds old, and re-queued with the same
params by `RetryHeartbeatStaleTrialCallback`, so a study is never left with a trial RUNNING
forever.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import optuna

from automl_clf.errors import StudyError

HEARTBEAT_INTERVAL = 20  # seconds between a running trial's heartbeats
GRACE_PERIOD = 90  # seconds without a heartbeat before a trial counts as dead
MAX_RETRY = 2  # re-runs of a trial whose process died
SQLITE_BUSY_TIMEOUT = 60  # seconds a SQLite writer waits for a lock instead of failing

# autoclf prints its own progress and each failed trial's reason; Optuna's own log would repeat
# them with tracebacks. The heartbeat and retry APIs we rely on are marked experimental.
optuna.logging.set_verbosity(logging.ERROR)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(url[len(prefix) :]) if url.startswith(prefix) else None


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The storage behind `url`, creating a SQLite file's folder when needed."""
    engine_kwargs = {}
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT}}
    try:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=HEARTBEAT_INTERVAL,
            grace_period=GRACE_PERIOD,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=MAX_RETRY
            ),
        )
    except Exception as exc:  # SQLAlchemy raises many kinds: bad URL, missing driver, refused
        raise StudyError(
            f"cannot open study storage {url!r}: {type(exc).__name__}: {exc}. Use a SQLAlchemy "
            "URL such as sqlite:///studies/name.db or postgresql://user:pass@host/db"
        ) from None


def trial_artifacts_dir(artifacts_root: Path, trial_number: int) -> Path:
    """Where one trial keeps its files (checkpoints, figures): `<study.artifacts>/trial_<n>/`."""
    return artifacts_root / f"trial_{trial_number:04d}"
