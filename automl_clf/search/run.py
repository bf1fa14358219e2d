"""Run a search: create or resume the study and run trials until it holds `n_trials` finished.

The loop is Optuna's ask-and-tell, so that each of the budgets is exact and each way a trial can
end has one defined state:

- `n_trials` counts finished (COMPLETE + PRUNED) trials in the study, across runs and workers.
  Under the study lock a worker counts finished and running trials and starts one only when
  their sum is below the target; when only other workers' running trials are missing, it waits
  for them (one of them may still fail); when the target is reached, it returns.
- `timeout` (or the `Budget` of `autoclf run`, search/budget.py) is wall-clock: no trial starts
  unless an epoch still fits before the search deadline, and the running trial stops at it,
  keeping its best finished epoch (user attribute `stopped_by: deadline`, PRUNED; FAIL with
  reason `timeout` only if it had not finished an epoch). Under a total budget the search
  deadline moves: it leaves the final step what the study's measurements say it needs.
- Ctrl-C and SIGTERM, from the first moment of the call (reading the data, opening the study,
  decoding images) to the last, raise KeyboardInterrupt: storage writes end or roll back and a
  running trial ends as FAIL with reason `interrupted`; a second one exits at once (the heartbeat
  then fails the trial). The next run retries timed-out and interrupted trials first, with the
  same params (user attribute `retry_of`: the original trial's number).
- A trial that fails through its configuration's fault is FAIL with its reason and traceback,
  and the loop goes on, until `max_consecutive_failures` fail in a row. A fatal error (errors.py:
  a broken environment, e.g. a storage that fails, a missing library, a full disk) stops the
  search at once with that `FatalError`: the trial is FAIL first, and retried first next time.
- A worker that dies without a word (kill -9) stops its trial's heartbeat; after the grace period
  any worker marks that trial FAIL and queues a retry with the same params (Optuna's system
  attribute `failed_trial`).
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from automl_clf.data.dataset import Dataset, load_dataset
from automl_clf.data.preprocess import Decoding
from automl_clf.errors import DeadlineReached, FatalError, StudyError
from automl_clf.models.factory import check_backbones
from automl_clf.search.budget import Budget, FinalEstimate, TrialTiming
from automl_clf.search.interrupts import interrupts_raise, raise_if_interrupted
from automl_clf.search.objective import Objective, SearchObserver, TrialReporter
from automl_clf.search.optuna_compat import heartbeat_interval, record_heartbeat
from automl_clf.search.record import TIMEOUT, TrialRecord
from automl_clf.search.storage import StudyLock, check_writable, sqlite_path, storage_faults
from automl_clf.search.study import FINISHED, OpenedStudy, finished_trials, open_study
from automl_clf.search.workers import (
    Helper,
    default_jobs,
    ended_helpers,
    join_helpers,
    start_helpers,
    stop_helpers,
    threads_split,
)
from automl_clf.spec.models import ResolvedSpec
from automl_clf.train.device import resolve_device

WORKER = f"{socket.gethostname()}:{os.getpid()}"  # `TrialRecord.worker` of this process's trials
POLL_SECONDS = 2.0  # how often a worker waiting for others' trials looks again
SHARED_SQLITE = (
    "other workers share this SQLite study: fine for a few local processes (writers wait for "
    "SQLite's lock), but PostgreSQL (--storage postgresql://…) or the journal file "
    "(--storage journal:PATH) is the right choice for more, or for several machines"
)


@dataclass
class SearchResult:
    study: optuna.Study
    target: int | None  # finished trials the study should hold; None: as many as time allows
    n_finished: int  # finished trials it holds now
    n_ran: int  # trials this run started (any state)
    timed_out: bool = False  # the command's timeout ended the run
    grid_size: int | None = None  # a grid study: its number of configurations
    space_changed: bool = False  # --force resumed a study whose space had changed

    @property
    def complete(self) -> bool:
        return self.target is not None and self.n_finished >= self.target


PlanFinal = Callable[[optuna.Study], FinalEstimate]  # the final step's cost, from the study


@dataclass(frozen=True)
class SearchData:
    """What a search needs checked and read before its study opens, made once by
    `prepare_search`: `autoclf run` prepares it before its budget probe and hands it to
    `run_search`, which would otherwise do the same work again."""

    dataset: Dataset


def prepare_search(spec: ResolvedSpec) -> SearchData:
    """Resolve the device (one this machine lacks: exit 2, not a failed trial), read the data
    set and check that every backbone the spec can pick builds and has its weights."""
    resolve_device(spec.train.device)
    check_writable(spec.study.storage)  # before the data cache, often in the same folder
    dataset = load_dataset(spec.data)
    check_backbones(spec)
    return SearchData(dataset)


def run_search(
    spec: ResolvedSpec,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    budget: Budget | None = None,
    plan_final: PlanFinal | None = None,
    observer: SearchObserver | None = None,
    force: bool = False,
    jobs: int | None = None,
    prepared: SearchData | None = None,
    reporter: TrialReporter | None = None,
) -> SearchResult:
    """Create or resume the spec's study and run trials until it holds `n_trials` finished.

    Args:
        n_trials: finished trials the study should hold (default `study.n_trials`, none under
            a time budget without one); a grid study holds at most its number of configurations.
        timeout: seconds of wall-clock for this call (default `study.timeout`, else
            `study.budget`).
        budget: instead of `timeout`, the whole job's budget (`autoclf run`), whose search
            deadline leaves room for the final step as `plan_final` estimates it from the study.
        force: resume a study whose search space changed.
        jobs: trials at once on this machine: this process and `jobs - 1` helper processes
            (search/workers.py), the CPU threads split between them; None: `default_jobs`
            (one per core under a time budget on the CPU, else 1).
        prepared: the data, device and backbones already checked (`prepare_search`), or None
            to do it here.
        reporter: shows each finished trial beside the study (the commands pass
            report/trial.py's optuna-dashboard note and confusion matrix), or None.

    Raises:
        DataError: the data set is unusable (before any trial starts).
        StudyError: the study is incompatible, or too many trials failed in a row.
        FatalError: the environment broke during a trial (errors.py), e.g. a `StorageError`:
            the study's storage, or the disk under its checkpoints, failed.
        KeyboardInterrupt: Ctrl-C or SIGTERM; the running trial is already FAIL (interrupted).
    """
    if budget is None:  # a search alone: its own timeout, else the job's budget as one
        seconds = next(
            (s for s in (timeout, spec.study.timeout, spec.study.budget) if s is not None), None
        )
        budget = Budget.start(seconds) if seconds is not None else None
    if jobs is None:
        jobs = default_jobs(timed=budget is not None)
    with interrupts_raise(), storage_faults(spec.study.storage), threads_split(spec, jobs):
        return _search(
            spec, n_trials, budget, plan_final, observer, force, jobs, prepared, reporter
        )


def _search(
    spec: ResolvedSpec,
    n_trials: int | None,
    budget: Budget | None,
    plan_final: PlanFinal | None,
    observer: SearchObserver | None,
    force: bool,
    jobs: int,
    prepared: SearchData | None,
    reporter: TrialReporter | None,
) -> SearchResult:
    target = n_trials or spec.study.trial_cap
    dataset = (prepared or prepare_search(spec)).dataset
    opened = open_study(spec, dataset, force=force)  # an old study may keep its old split
    leaked = dataset.near_duplicates.summary() if dataset.near_duplicates is not None else ""
    if leaked and observer is not None:  # the data phase's one line (data/near_duplicates.py)
        observer.notice(leaked)
    study = opened.study
    if opened.n_grid_points is not None:
        target = min(target or opened.n_grid_points, opened.n_grid_points)

    def result(n_ran: int, timed_out: bool = False) -> SearchResult:
        n_finished = len(finished_trials(study))
        grid, changed = opened.n_grid_points, opened.space_changed
        return SearchResult(study, target, n_finished, n_ran, timed_out, grid, changed)

    if target is not None and len(finished_trials(study)) >= target:
        return result(0)
    dataset.arrays(Decoding.of(spec.data))  # decode once, before any trial's clock starts
    if observer is not None:
        observer.search_started(study, target, budget=budget, workers=jobs)
    with opened.lock.held():
        requeue_cut_short(study)
    objective = Objective(
        spec, dataset, observer, study_uid=opened.uid, deadline=budget, reporter=reporter
    )
    helpers = start_helpers(spec, jobs - 1, n_trials, budget, plan_final, reporter)
    if budget is not None and plan_final is not None:  # the running trials' deadline, current
        budget.follow(lambda: plan_final(study))
    try:
        n_ran, timed_out = _trial_loop(
            study, opened, objective, target, budget, plan_final, observer, helpers
        )
        stop_helpers(_idle(helpers, study))
    except BaseException:
        stop_helpers(helpers)
        raise
    finally:
        if budget is not None:
            budget.follow(None)
    for text in join_helpers(helpers):
        _notice(observer, text)
    return result(n_ran, timed_out)


def _idle(helpers: list[Helper], study: optuna.Study) -> list[Helper]:
    """The helpers that run no trial now that this worker's loop is over. The study holds its
    target or the search's time is up, so they cannot start one any more: they are stopped,
    not waited for (one still starting, importing torch, held its caller seconds past the
    budget). None while a trial runs whose worker is not yet recorded (one just starting)."""
    if not helpers:
        return []
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    workers = {TrialRecord.of(t).worker for t in running}
    if None in workers:
        return []
    host = WORKER.rsplit(":", 1)[0]
    return [helper for helper in helpers if f"{host}:{helper.pid}" not in workers]


def _notice(observer: SearchObserver | None, text: str) -> None:
    """Something the user must hear about the search (a helper process that failed): through
    the display, else as a warning (the API without progress), never not at all."""
    if observer is not None:
        observer.notice(text)
    else:
        warnings.warn(text, RuntimeWarning, stacklevel=2)


def _trial_loop(
    study: optuna.Study,
    opened: OpenedStudy,
    objective: Objective,
    target: int | None,
    budget: Budget | None,
    plan_final: PlanFinal | None,
    observer: SearchObserver | None,
    helpers: list[Helper],
) -> tuple[int, bool]:
    """Start trials until the target or the deadline; (trials run, whether time ran out).

    `helpers`: this command's own other workers (`--jobs`): no note about sharing SQLite with
    them, and one about each that fails, seen between this worker's trials.
    """
    failures = _FailureLimit(objective.spec.study.max_consecutive_failures)
    n_ran = 0
    sqlite = not helpers and sqlite_path(str(objective.spec.study.storage)) is not None
    while True:
        raise_if_interrupted()
        for text in ended_helpers(helpers):
            _notice(observer, text)
        if budget is not None:
            if plan_final is not None:
                budget.reserve(plan_final(study))
            if not budget.fits(_epoch_estimate(study, budget)):
                return n_ran, True
        optuna.storages.fail_stale_trials(study)  # dead workers' trials: FAIL + retry
        started, others = _start_trial_within_budget(study, opened.lock, target)
        if others and sqlite and observer is not None:
            sqlite = False  # say it once
            observer.notice(SHARED_SQLITE)
        if started is _DONE:
            return n_ran, False
        if started is None:  # the missing trials are running in other workers
            if observer is not None:
                observer.waiting_for_others()
            wait = POLL_SECONDS
            if budget is not None:
                wait = max(0.0, min(wait, budget.search_left_s()))
            time.sleep(wait)
            continue
        assert isinstance(started, optuna.Trial)
        trial = _run_trial(study, opened, started, objective)
        n_ran += 1
        if observer is not None:
            observer.trial_finished(study, trial)
        if TrialRecord.of(trial).fail_reason == TIMEOUT:
            return n_ran, True
        if failures.hit(trial):
            raise StudyError(
                f"{failures.in_a_row} trials failed in a row, the last with: "
                f"{failures.last_reason}. Fix the spec (see `autoclf validate`), then "
                "rerun to resume the study"
            )


_DONE = object()  # the study holds its target of finished trials


def _epoch_estimate(study: optuna.Study, budget: Budget) -> float:
    """Seconds a new trial needs to finish one epoch: the median over the study's finished
    trials, else the budget's own estimate (the job's probe; 0 for a bare timeout)."""
    timings = [TrialTiming.of(TrialRecord.of(t)) for t in finished_trials(study)]
    paces = sorted(t.seconds_per_epoch for t in timings if t is not None)
    return paces[len(paces) // 2] if paces else budget.epoch_estimate_s


def _start_trial_within_budget(
    study: optuna.Study, lock: StudyLock, target: int | None
) -> tuple[Any, bool]:
    """A new (or queued) trial, None when only running trials are missing, or `_DONE`; and
    whether other workers are running trials.

    Counting and starting happen under the study lock, so concurrent workers never start more
    trials than the target needs.
    """
    with lock.held():
        trials = study.get_trials(deepcopy=False)
        n_finished = sum(t.state in FINISHED for t in trials)
        running = [t for t in trials if t.state == TrialState.RUNNING]
        others = any(TrialRecord.of(t).worker not in (None, WORKER) for t in running)
        if target is not None and n_finished >= target:
            return _DONE, others
        if target is not None and n_finished + len(running) >= target:
            return None, others
        with warnings.catch_warnings():  # we run the heartbeat ourselves (`_heartbeat`)
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
            return study.ask(), others


def _run_trial(
    study: optuna.Study, opened: OpenedStudy, trial: optuna.Trial, objective: Objective
) -> FrozenTrial:
    """Run one trial to a final state: COMPLETE, PRUNED or FAIL (never left RUNNING).

    As keras-tuner's `_try_run_and_update_trial`: a failed trial is told FAIL and the loop goes
    on; a fatal error (or Ctrl-C) is told FAIL and raised, to stop the search. The objective has
    recorded why (search/objective.py).
    """
    TrialRecord(worker=WORKER).save(trial)
    with _heartbeat(opened, trial):
        try:
            values = objective(trial)
        except optuna.TrialPruned:
            return study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
        except (KeyboardInterrupt, FatalError):  # this command cannot go on
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
        except (DeadlineReached, Exception):  # this trial cannot, the next one may
            return study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        finally:
            gc.collect()
    return study.tell(trial, values, skip_if_finished=True)


@contextlib.contextmanager
def _heartbeat(opened: OpenedStudy, trial: optuna.Trial) -> Iterator[None]:
    """Beat for `trial` every heartbeat interval while it runs (what `optimize` would do)."""
    storage: BaseStorage = opened.storage
    interval = heartbeat_interval(storage)
    if interval is None:
        yield
        return
    trial_id = storage.get_trial_id_from_study_id_trial_number(opened.study_id, trial.number)
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a missed beat is retried next interval
                record_heartbeat(storage, trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="autoclf-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class _FailureLimit:
    """Counts this run's trials that failed in a row; `hit` once `limit` did (a broken spec)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_a_row = 0
        self.last_reason = ""

    def hit(self, trial: FrozenTrial) -> bool:
        if trial.state != TrialState.FAIL:
            self.in_a_row = 0
            return False
        self.in_a_row += 1
        self.last_reason = TrialRecord.of(trial).fail_reason or "unknown"
        return self.in_a_row >= self.limit


def requeue_cut_short(study: optuna.Study) -> list[int]:
    """Queue once more, with the same params, each trial a Ctrl-C, SIGTERM, timeout or a fatal
    error (a disk that could not take its checkpoint, a missing library) cut short.

    Run under the study lock, so that workers starting together queue each trial once. Returns
    the numbers of the trials queued again.
    """
    trials = [(t, TrialRecord.of(t)) for t in study.get_trials(deepcopy=False)]
    requeued = {record.requeued_from for _, record in trials}
    again = []
    for trial, record in trials:
        if (
            trial.state == TrialState.FAIL
            and record.retried_first
            and trial.number not in requeued
        ):
            # the original: of a retry, its own original; of a heartbeat retry, the dead trial
            original = record.retry_of
            if original is None:
                original = trial.system_attrs.get("failed_trial", trial.number)
            queued = TrialRecord(retry_of=original, requeued_from=trial.number)
            study.enqueue_trial(trial.params, user_attrs=queued.attrs())
            again.append(trial.number)
    return again
