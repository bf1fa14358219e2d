"""Ctrl-C and SIGTERM during a search: the running trial ends as FAIL (interrupted), then the
command exits 130; a second signal exits at once.

The handler raises KeyboardInterrupt where the main thread happens to be. Python drops an
exception raised inside a garbage-collection callback or a `__del__` ("Exception ignored …"),
and a worker was seen to lose its SIGTERM that way inside SQLAlchemy and run on. So the handler
also sets a flag, which the search loop checks before each trial and the objective after each
epoch (`raise_if_interrupted`): a signal that was swallowed still stops the search at the next
epoch.

A signal that lands inside the study's storage code (SQLAlchemy, a database driver, Optuna's
storages) only sets the flag. Raised there, the exception's traceback keeps a half-read SQLite
cursor alive, whose shared lock then blocks the FAIL record the objective writes next: the
process hung for the whole busy timeout (seen in CI, reproduced 1 run in 6). The trainer's batch
hook checks the flag too (at most every `STEP_REPORT_S`), so a deferred signal still stops a
trial within about half a second.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

_requested = threading.Event()

# Modules a KeyboardInterrupt must not unwind through: it can leave a connection mid-statement.
_DEFERRING_MODULES = ("sqlalchemy", "sqlite3", "psycopg2", "pymysql", "optuna.storages")


def raise_if_interrupted() -> None:
    """KeyboardInterrupt if a signal arrived that nothing has acted on."""
    if _requested.is_set():
        raise KeyboardInterrupt("interrupted")


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt (storage writes roll back, the running trial
    ends as FAIL); a second signal exits at once with code 130, leaving the trial to the
    heartbeat."""
    received = 0

    def interrupt(signum: int, frame: Any) -> None:
        nonlocal received
        received += 1
        _requested.set()
        if received > 1:
            os.write(2, b"\nsecond interrupt: exiting now\n")
            os._exit(130)
        if not _inside_storage(frame):  # else the next `raise_if_interrupted` raises it
            raise KeyboardInterrupt(f"signal {signum}")

    _requested.clear()
    try:
        previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        _requested.clear()  # acted on (or the search is over): the next search starts clean
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _inside_storage(frame: FrameType | None) -> bool:
    """Whether the interrupted code is (called from) one of `_DEFERRING_MODULES`."""
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith(_DEFERRING_MODULES):
            return True
        frame = frame.f_back
    return False
