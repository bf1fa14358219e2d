"""Study storage: SQLite under studies/ by default, any SQLAlchemy URL (PostgreSQL for several
machines), or Optuna's journal file (`journal:PATH`, for several processes on one file system).

Every storage runs a heartbeat: a trial whose process died (kill -9, a lost machine) is marked
FAIL once its heartbeat is `grace_period` seconds old, and re-queued with the same params by
`RetryHeartbeatStaleTrialCallback`, so a study is never left with a trial RUNNING forever.
Optuna's journal storage has no heartbeat of its own; `_JournalStorage` adds one.

`StudyLock` serialises the few steps that must not interleave between workers: creating the
schema and the study, and "count the finished and running trials, then start one" (what makes
`n_trials` exact across workers).
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from automl_clf.errors import StudyError

HEARTBEAT_INTERVAL = 20  # seconds between a running trial's heartbeats
GRACE_PERIOD = 90  # seconds without a heartbeat before a trial counts as dead
MAX_RETRY = 2  # re-runs of a trial whose process died
SQLITE_BUSY_TIMEOUT = 60  # seconds a SQLite writer waits for a lock instead of failing
JOURNAL_PREFIX = "journal:"

# autoclf prints its own progress and each failed trial's reason; Optuna's own log would repeat
# them with tracebacks. The heartbeat and retry APIs we rely on are marked experimental.
optuna.logging.set_verbosity(logging.ERROR)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(url[len(prefix) :]) if url.startswith(prefix) else None


def journal_path(url: str) -> Path | None:
    """`journal:studies/x.log` -> Path('studies/x.log'); None for other URLs."""
    if not url.startswith(JOURNAL_PREFIX):
        return None
    return Path(url[len(JOURNAL_PREFIX) :].removeprefix("//")).expanduser()


def _dialect(url: str) -> str:
    """`postgresql+psycopg2://…` -> 'postgresql'."""
    return url.split(":", 1)[0].split("+", 1)[0].lower()


class _JournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal storage with a heartbeat: a trial system attribute holds its last beat."""

    def __init__(
        self,
        path: Path,
        heartbeat_interval: int,
        grace_period: int,
        stale_callback: Callable[[optuna.Study, FrozenTrial], None],
    ) -> None:
        super().__init__(JournalFileBackend(str(path)))
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.stale_callback = stale_callback

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, "heartbeat", time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            started = trial.datetime_start.timestamp() if trial.datetime_start else now
            if now - float(trial.system_attrs.get("heartbeat", started)) > self.grace_period:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(
        self,
    ) -> Callable[[optuna.Study, FrozenTrial], None]:
        return self.stale_callback


def open_storage(
    url: str, *, heartbeat_interval: int = HEARTBEAT_INTERVAL, grace_period: int = GRACE_PERIOD
) -> BaseStorage:
    """The storage behind `url`, creating a SQLite or journal file's folder when needed.

    Open it under `StudyLock(url, …).held()` when other workers may be starting too: creating
    the schema is not safe to race.
    """
    retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    journal = journal_path(url)
    if journal is not None:
        journal.parent.mkdir(parents=True, exist_ok=True)
        return _JournalStorage(journal, heartbeat_interval, grace_period, retry)
    engine_kwargs: dict[str, Any] = {}
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT}}
    try:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=retry,
        )
    except Exception as exc:  # SQLAlchemy raises many kinds: bad URL, missing driver, refused
        raise StudyError(
            f"cannot open study storage {url!r}: {type(exc).__name__}: {exc}. Use a SQLAlchemy "
            "URL such as sqlite:///studies/name.db or postgresql://user:pass@host/db, or "
            "journal:studies/name.log"
        ) from None


class StudyLock:
    """A lock shared by every worker of one study, wherever it runs.

    SQLite and journal files: an exclusive `flock` on a file beside the study's file (the
    processes share a file system). PostgreSQL and MySQL: a named advisory lock in the database
    server, held on a connection of its own. Other databases: no lock (a rare race can then
    start one trial more than `n_trials`).
    """

    def __init__(self, url: str, study_name: str) -> None:
        self.url = url
        self.key = zlib.crc32(f"autoclf:{study_name}".encode())  # a stable 32-bit lock id
        path = sqlite_path(url) or journal_path(url)
        # Not `<file>.lock`: Optuna's journal backend takes that name for its own lock.
        self.file = path.with_name(path.name + ".study-lock") if path is not None else None
        self._engine: Any = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self.file is not None:
            with self._file_lock():
                yield
        elif _dialect(self.url) in ("postgresql", "mysql", "mariadb"):
            with self._server_lock():
                yield
        else:
            yield

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        try:
            import fcntl
        except ImportError:  # not POSIX: SQLite's own locking is all there is
            yield
            return
        assert self.file is not None
        self.file.parent.mkdir(parents=True, exist_ok=True)
        with self.file.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _server_lock(self) -> Iterator[None]:
        import sqlalchemy

        if self._engine is None:
            try:
                self._engine = sqlalchemy.create_engine(
                    self.url, poolclass=sqlalchemy.pool.NullPool
                )
            except Exception as exc:
                raise StudyError(
                    f"cannot open study storage {self.url!r}: {type(exc).__name__}: {exc}"
                ) from None
        postgres = _dialect(self.url) == "postgresql"
        lock, unlock = (
            ("SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)")
            if postgres
            else ("SELECT GET_LOCK(:key, -1)", "SELECT RELEASE_LOCK(:key)")
        )
        key: Any = self.key if postgres else f"autoclf-{self.key}"
        try:
            connection = self._engine.connect()
        except Exception as exc:
            raise StudyError(
                f"cannot reach study storage {self.url!r}: {type(exc).__name__}: {exc}"
            ) from None
        # Closing the connection (NullPool: really closing it) releases the lock even when the
        # unlock statement never runs.
        with connection:
            connection.execute(sqlalchemy.text(lock), {"key": key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text(unlock), {"key": key})


def trial_artifacts_dir(artifacts_root: Path, trial_number: int) -> Path:
    """Where one trial keeps its files (checkpoints, figures): `<study.artifacts>/trial_<n>/`."""
    return artifacts_root / f"trial_{trial_number:04d}"
