"""Where autoclf reaches past Optuna's public API, and why: one module, so that an Optuna release
that moves these breaks here and nowhere else.

- `BaseHeartbeat` (`optuna.storages._heartbeat`): Optuna recognises a storage that has a
  heartbeat (`fail_stale_trials`, `RetryHeartbeatStaleTrialCallback`) by this base class alone.
  Its journal storage has none, so ours (search/storage.py) must subclass it; Optuna documents
  the class as "not supposed to be directly accessed by library users" and offers no public one.
- `heartbeat_interval` and `record_heartbeat`: whether a storage beats, how often, and one beat.
  `Study.optimize` beats for its running trial on a private thread (`get_heartbeat_thread`);
  autoclf's ask-and-tell loop (search/run.py, for budgets exact across workers) must beat
  itself, and `is_heartbeat_enabled` lives in the private module too.

A trial's storage id, which a beat names, comes from public storage methods
(`get_study_id_from_name`, `get_trial_id_from_study_id_trial_number`), never `trial._trial_id`.

`quiet_optuna` touches no internal: it sets Optuna's process-wide logging and warnings as
autoclf's entry points want them (the CLI, a search helper process), never at import;
`optuna_quieted` does the same for the length of a Python API call, then puts them back.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

import optuna
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat

__all__ = [
    "BaseHeartbeat",
    "heartbeat_interval",
    "optuna_quieted",
    "quiet_optuna",
    "record_heartbeat",
]


def heartbeat_interval(storage: BaseStorage) -> int | None:
    """Seconds between a running trial's heartbeats on `storage`; None: it has no heartbeat."""
    if not isinstance(storage, BaseHeartbeat):
        return None
    return storage.get_heartbeat_interval()


def record_heartbeat(storage: BaseStorage, trial_id: int) -> None:
    """One heartbeat of the running trial `trial_id` (a storage id, not its number)."""
    if not isinstance(storage, BaseHeartbeat):
        raise TypeError(f"{type(storage).__name__} has no heartbeat")
    storage.record_heartbeat(trial_id)


def quiet_optuna() -> None:
    """Optuna's own log off below errors, and its experimental-API warnings ignored: autoclf
    prints its own progress and each failed trial's reason, which Optuna's log would repeat with
    tracebacks; the heartbeat and retry APIs autoclf relies on are marked experimental. For
    entry points only (a library import must not change the process's logging)."""
    optuna.logging.set_verbosity(logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@contextlib.contextmanager
def optuna_quieted() -> Iterator[None]:
    """`quiet_optuna` while the block runs (an API call: `automl_clf.run`, `search`), then
    Optuna's verbosity and the warning filters as they were, so the caller's own use of Optuna
    and warnings is left alone. The filters are process-wide while it runs (every thread's
    warnings), as `warnings.catch_warnings` makes them."""
    verbosity = optuna.logging.get_verbosity()
    with warnings.catch_warnings():
        quiet_optuna()
        try:
            yield
        finally:
            optuna.logging.set_verbosity(verbosity)
