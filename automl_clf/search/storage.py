"""Study storage: SQLite under studies/ by default, PostgreSQL or MySQL for several machines, or
Optuna's journal file (`journal:PATH`, for several processes on one file system).

Each kind of storage is one class registered in `STORAGES` under its URL's scheme (the part
before `:`, without a `+driver`): how to open it, and how workers of one study lock each other
out (a file lock beside its file, or the database server's advisory lock). A URL of any other
scheme is a spec error naming the known ones: it never opens without a lock. To add a scheme:
one class below, decorated `@STORAGES.register("scheme")`; tests/conftest.py's `study_storage`
runs the storage tests over every registered scheme it can reach.

Every storage runs a heartbeat: a trial whose process died (kill -9, a lost machine) is marked
FAIL once its heartbeat is `grace_period` seconds old, and re-queued with the same params by
`RetryHeartbeatStaleTrialCallback`, so a study is never left with a trial RUNNING forever.
Optuna's journal storage has no heartbeat of its own; `_JournalStorage` adds one.

`StudyLock` serialises the few steps that must not interleave between workers: creating the
schema and the study, and "count the finished and running trials, then start one" (what makes
`n_trials` exact across workers).

A storage that fails (a damaged SQLite file, a read-only folder, a full disk) surfaces from deep
inside SQLAlchemy, Optuna or the journal backend, wrapped in their own errors; `storage_faults`
turns it into one `StorageError` line naming the file and what to do. The file is never moved,
repaired or deleted on the user's behalf.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import optuna
from optuna.storages import BaseStorage, JournalStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from automl_clf.errors import AutoclfError, SpecError, StorageError, StudyError
from automl_clf.search.optuna_compat import BaseHeartbeat
from automl_clf.spec.registry import Registry

HEARTBEAT_INTERVAL = 20  # seconds between a running trial's heartbeats
GRACE_PERIOD = 90  # seconds without a heartbeat before a trial counts as dead
MAX_RETRY = 2  # re-runs of a trial whose process died
SQLITE_BUSY_TIMEOUT = 60  # seconds a SQLite writer waits for a lock instead of failing


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
                stale.append(self.get_trial_id_from_study_id_trial_number(study_id, trial.number))
        return stale

    def get_heartbeat_interval(self) -> int:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(
        self,
    ) -> Callable[[optuna.Study, FrozenTrial], None]:
        return self.stale_callback


class StorageScheme:
    """One kind of study storage, told by its URL's scheme: how to open it and how to lock it.

    A storage keeps the study in a file (`file` gives it: workers lock a file beside it with
    `flock`, so they must share its file system), or in a database server (`advisory_lock`
    gives the server's named lock).
    """

    example: ClassVar[str]  # a URL of this scheme, for messages

    def file(self, url: str) -> Path | None:
        """The file holding the study; None for a database server or an in-memory one."""
        return None

    def in_memory(self, url: str) -> bool:
        """The storage lives in this process only (`sqlite://`): there is nothing to lock."""
        return False

    def advisory_lock(self, key: int) -> tuple[str, str, Any] | None:
        """A database server's named lock: (lock SQL, unlock SQL, the value bound to :key)."""
        return None

    def open(self, url: str, heartbeat_interval: int, grace_period: int) -> BaseStorage:
        """The storage; any SQLAlchemy URL, by default, with Optuna's heartbeat."""
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=self.engine_kwargs(url),
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
        )

    def engine_kwargs(self, url: str) -> dict[str, Any]:
        return {}


STORAGES: Registry[type[StorageScheme]] = Registry("storage scheme")


@STORAGES.register("sqlite")
class SQLite(StorageScheme):
    """A SQLite file: the default, fine for a few processes on one machine."""

    example = "sqlite:///studies/name.db"

    def file(self, url: str) -> Path | None:
        prefix = "sqlite:///"
        return Path(url[len(prefix) :]) if url.startswith(prefix) else None

    def in_memory(self, url: str) -> bool:
        return url == "sqlite://"

    def engine_kwargs(self, url: str) -> dict[str, Any]:
        path = self.file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT}}


@STORAGES.register("journal")
class Journal(StorageScheme):
    """Optuna's journal file (`journal:PATH`): many processes on one file system, no server."""

    example = "journal:studies/name.log"

    def file(self, url: str) -> Path | None:
        """`journal:studies/x.log` -> Path('studies/x.log')."""
        return Path(url.split(":", 1)[1].removeprefix("//")).expanduser()

    def open(self, url: str, heartbeat_interval: int, grace_period: int) -> BaseStorage:
        path = self.file(url)
        assert path is not None
        with storage_faults(url):
            path.parent.mkdir(parents=True, exist_ok=True)
            retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
            return _JournalStorage(path, heartbeat_interval, grace_period, retry)


@STORAGES.register("postgresql")
class PostgreSQL(StorageScheme):
    """A PostgreSQL database (`pip install 'autoclf[postgres]'` for the driver): workers on
    several machines."""

    example = "postgresql://user:pass@host/db"

    def advisory_lock(self, key: int) -> tuple[str, str, Any] | None:
        return "SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)", key


@STORAGES.register("mysql")
class MySQL(StorageScheme):
    """A MySQL database (with a driver such as PyMySQL installed): workers on several machines."""

    example = "mysql+pymysql://user:pass@host/db"

    def advisory_lock(self, key: int) -> tuple[str, str, Any] | None:
        return "SELECT GET_LOCK(:key, -1)", "SELECT RELEASE_LOCK(:key)", f"autoclf-{key}"


@STORAGES.register("mariadb")
class MariaDB(MySQL):
    """A MariaDB database: MySQL's locks."""

    example = "mariadb+pymysql://user:pass@host/db"


def storage_scheme(url: str) -> StorageScheme:
    """The registered scheme of `url` (`postgresql+psycopg://…` is `postgresql`).

    Raises:
        SpecError: the scheme is not registered; the message names the known ones.
    """
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower() if ":" in url else ""
    if scheme not in STORAGES:
        examples = ", ".join(entry.example for _, entry in STORAGES.items())
        raise SpecError(f"study.storage: {STORAGES.unknown(scheme)} in {url!r}; e.g. {examples}")
    return STORAGES[scheme]()


def sqlite_path(url: str) -> Path | None:
    """The SQLite file of a `sqlite:///` URL; None for other storages."""
    return SQLite().file(url)


def storage_file(url: str) -> Path | None:
    """The file a SQLite or journal storage keeps its study in; None for a database server."""
    return storage_scheme(url).file(url)


def open_storage(
    url: str, *, heartbeat_interval: int = HEARTBEAT_INTERVAL, grace_period: int = GRACE_PERIOD
) -> BaseStorage:
    """The storage behind `url`, creating a SQLite or journal file's folder when needed.

    Open it under `StudyLock(url, …).held()` when other workers may be starting too: creating
    the schema is not safe to race.

    Raises:
        SpecError: the URL's scheme is not registered (see `STORAGES`).
        StorageError: the storage is damaged, read-only or on a full disk.
        StudyError: the URL cannot be opened (malformed, a missing driver, a refused server).
    """
    scheme = storage_scheme(url)
    try:
        return scheme.open(url, heartbeat_interval, grace_period)
    except AutoclfError:
        raise
    except Exception as exc:  # SQLAlchemy raises many kinds: bad URL, missing driver, refused
        fault = _classify(url, exc)
        if fault is not None and fault[0] != _FAILED:  # the URL is fine, its storage is not
            raise _storage_error(url, *fault) from None
        raise StudyError(
            f"cannot open study storage {url!r}: {type(exc).__name__}: {exc}. Use a URL such "
            f"as {scheme.example}"
        ) from None


_DAMAGED, _FULL, _READ_ONLY, _FAILED = "damaged", "full", "read-only", "failed"
_KIND_BY_TEXT = (  # SQLite's messages, as SQLAlchemy and Optuna pass them on
    (_DAMAGED, ("malformed", "not a database", "file is encrypted")),
    (_FULL, ("disk is full", "no space left")),
    (_READ_ONLY, ("readonly", "read-only", "unable to open database file", "permission denied")),
)
_KIND_BY_ERRNO = {
    errno.ENOSPC: _FULL,
    errno.EDQUOT: _FULL,
    errno.EFBIG: _FULL,
    errno.EROFS: _READ_ONLY,
    errno.EACCES: _READ_ONLY,
    errno.EPERM: _READ_ONLY,
}


@contextlib.contextmanager
def storage_faults(url: str) -> Iterator[None]:
    """Within: a failure of the storage behind `url` (or of its files: the SQLite or journal
    file, their locks and journals) is raised as one `StorageError` line; anything else
    passes through unchanged."""
    try:
        yield
    except AutoclfError:
        raise  # ours already says what is wrong
    except Exception as exc:
        fault = _classify(url, exc)
        if fault is None:
            raise
        raise _storage_error(url, *fault) from None


def check_writable(url: str) -> None:
    """Before the data is read: a storage file in a folder that cannot be written is its
    `StorageError` now, rather than a failure of whatever writes there first (the data cache,
    which is `studies/cache` beside `studies/<name>.db` by default). A server, or a folder not
    made yet, is left to opening the storage.

    Raises:
        StorageError: naming the storage's file, what the file system said, and the fix.
    """
    own = _own_file(url)
    if own is None or not own.parent.is_dir():
        return
    probe = own.with_name(f"{own.name}.probe-{os.getpid()}")
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        kind = _KIND_BY_ERRNO.get(exc.errno or 0, _FAILED)
        raise _storage_error(url, kind, f"{exc.strerror or exc}: {own.parent}") from None


def _classify(url: str, exc: BaseException) -> tuple[str, str] | None:
    """(kind, what the storage said) when `exc` is (or wraps) a failure of the storage."""
    import sqlite3

    import sqlalchemy.exc

    own = _own_file(url)
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        text = None
        if isinstance(cause, sqlalchemy.exc.DBAPIError) and cause.orig is not None:
            text = str(cause.orig)
        elif isinstance(cause, sqlite3.Error | sqlalchemy.exc.SQLAlchemyError):
            text = str(cause).splitlines()[0]
        elif isinstance(cause, OSError) and own is not None and cause.filename:
            touched = Path(cause.filename)  # the storage's file, its lock or journal, its folder
            if touched == own.parent or (
                touched.parent == own.parent and touched.name.startswith(own.name)
            ):
                kind = _KIND_BY_ERRNO.get(cause.errno or 0, _FAILED)
                return kind, f"{cause.strerror or cause}: {touched}"
        if text is not None:
            lowered = text.lower()
            for kind, needles in _KIND_BY_TEXT:
                if any(needle in lowered for needle in needles):
                    return kind, text
            return _FAILED, text
        suppressed = cause.__suppress_context__  # `raise … from None`: the context is moot
        cause = cause.__cause__ or (None if suppressed else cause.__context__)
    if isinstance(exc, optuna.exceptions.StorageInternalError):
        return _FAILED, str(exc)
    return None


def _own_file(url: str) -> Path | None:
    """The storage's file, or None (a server, or a URL of no known scheme)."""
    try:
        return storage_file(url)
    except SpecError:
        return None


def _storage_error(url: str, kind: str, said: str) -> StorageError:
    where = _own_file(url) or url
    if kind == _DAMAGED:
        fix = (
            "move it aside and rerun to start the study afresh, or restore it from a backup "
            "(autoclf left it as it is)"
        )
        return StorageError(f"the study storage {where} is damaged ({said}); {fix}")
    if kind == _FULL:
        return StorageError(
            f"the disk holding the study storage {where} is full ({said}); free space there, "
            "then rerun to resume the study"
        )
    if kind == _READ_ONLY:
        fix = "make it and its folder writable" if where != url else "let its user write to it"
        return StorageError(
            f"cannot write the study storage {where} ({said}); {fix} (or point --storage at a "
            "writable place), then rerun"
        )
    return StorageError(f"the study storage {where} failed ({said}); fix it, then rerun")


class StudyLock:
    """A lock shared by every worker of one study, wherever it runs.

    SQLite and journal files: an exclusive `flock` on a file beside the study's file (the
    processes share a file system). Database servers: their named advisory lock (PostgreSQL's
    `pg_advisory_lock`, MySQL's `GET_LOCK`), held on a connection of its own. A URL of any other
    scheme is refused (`storage_scheme`): no worker runs without the lock.
    """

    def __init__(self, url: str, study_name: str) -> None:
        self.url = url
        self.scheme = storage_scheme(url)
        self.key = zlib.crc32(f"autoclf:{study_name}".encode())  # a stable 32-bit lock id
        path = self.scheme.file(url)
        # Not `<file>.lock`: Optuna's journal backend takes that name for its own lock.
        self.file = path.with_name(path.name + ".study-lock") if path is not None else None
        self._engine: Any = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self.file is not None:
            with self._file_lock():
                yield
        elif self.scheme.in_memory(self.url):
            yield  # one process holds the whole study
        else:
            with self._server_lock():
                yield

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        try:
            import fcntl
        except ImportError:  # not POSIX: SQLite's own locking is all there is
            yield
            return
        assert self.file is not None
        with storage_faults(self.url):
            self.file.parent.mkdir(parents=True, exist_ok=True)
            handle = self.file.open("a")
        with handle:
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
        statements = self.scheme.advisory_lock(self.key)
        assert statements is not None, f"{self.url}: a storage without a file or a server lock"
        lock, unlock, key = statements
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
