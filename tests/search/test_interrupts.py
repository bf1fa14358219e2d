"""Ctrl-C and SIGTERM during a search (search/interrupts.py): each raises KeyboardInterrupt
where the main thread is and leaves a flag for the next check; a second one exits 130 at once;
the previous handlers come back, and the next search starts with no signal pending. (A signal
Python swallows inside `__del__`: tests/search/test_run.py.)"""

from __future__ import annotations

import signal
import threading

import pytest

from automl_clf.search.interrupts import interrupts_raise, raise_if_interrupted
from tests.conftest import fresh_python


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_raises_keyboard_interrupt_and_is_pending_until_the_search_ends(
    sig: signal.Signals,
) -> None:
    with interrupts_raise():
        with pytest.raises(KeyboardInterrupt, match=f"signal {int(sig)}"):
            signal.raise_signal(sig)
        with pytest.raises(KeyboardInterrupt, match="interrupted"):
            raise_if_interrupted()  # the flag: what the objective checks after each epoch
    raise_if_interrupted()  # over: the next search starts clean


def test_the_previous_handlers_come_back() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with interrupts_raise():
        assert all(signal.getsignal(sig) is not before[sig] for sig in before)
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_outside_the_main_thread_signals_are_left_alone() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []

    def search() -> None:
        with interrupts_raise():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=search)
    thread.start()
    thread.join()
    assert seen == [before]


def test_a_second_signal_exits_130_at_once() -> None:
    script = (
        "import signal\n"
        "from automl_clf.search.interrupts import interrupts_raise\n"
        "with interrupts_raise():\n"
        "    try:\n"
        "        signal.raise_signal(signal.SIGINT)\n"
        "    except KeyboardInterrupt:\n"
        "        print('first', flush=True)\n"
        "    signal.raise_signal(signal.SIGTERM)\n"
        "    print('not reached')\n"
    )
    ran = fresh_python("-c", script, timeout=60)
    assert ran.returncode == 130
    assert ran.stdout == "first\n" and "second interrupt: exiting now" in ran.stderr
