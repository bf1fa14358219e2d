"""Ctrl-C and SIGTERM during a search (search/interrupts.py): each raises KeyboardInterrupt
where the main thread is and leaves a flag for the next check; a second one exits 130 at once;
the previous handlers come back, and the next search starts with no signal pending; inside the
study's storage a signal only sets the flag. (A signal
Python swallows inside `__del__`: tests/search/test_run.py.)"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import optuna
import pytest
import sqlalchemy

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


def test_a_signal_inside_the_storage_waits_for_the_next_check(tmp_path: Path) -> None:
    # Raised inside SQLAlchemy, KeyboardInterrupt left a half-read cursor whose lock hung the
    # FAIL record written next; the handler defers it to `raise_if_interrupted` instead.
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(storage=storage)
    study.enqueue_trial({"x": 1.0})
    engine = storage.engine

    sent: list[str] = []

    def signal_once(conn: object, cursor: object, statement: str, *args: object) -> None:
        if not sent:
            sent.append(statement)
            signal.raise_signal(signal.SIGINT)

    with interrupts_raise():
        sqlalchemy.event.listen(engine, "before_cursor_execute", signal_once)
        try:
            trial = study.ask()  # the signal arrives in the middle of the storage's queries
        except KeyboardInterrupt:
            pytest.fail("the signal was raised inside the storage's code")
        with pytest.raises(KeyboardInterrupt, match="interrupted"):
            raise_if_interrupted()
        trial.set_user_attr("fail_reason", "interrupted")  # the database is not locked
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert sent  # the signal did land inside the storage
    assert study.trials[0].user_attrs == {"fail_reason": "interrupted"}
