"""Ctrl-C and SIGTERM during a search: the running trial ends as FAIL (interrupted), then the
command exits 130; a second signal exits at once.

The handler raises KeyboardInterrupt where the main thread happens to be. Python drops an
exception raised inside a garbage-collection callback or a `__del__` ("Exception ignored …"),
and a worker was seen to lose its SIGTERM that way inside SQLAlchemy and run on. So the handler
also sets a flag, which the search loop checks before each trial and the objective after each
epoch (`raise_if_interrupted`): a signal that was swallowed still stops the search at the next
epoch.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

_requested = threading.Event()


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
