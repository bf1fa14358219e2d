"""Run a search: create or resume the study and run trials until it holds `n_trials` finished.

`n_trials` counts finished (COMPLETE + PRUNED) trials in the study, across runs and workers, so
rerunning the same command resumes and runs only what is missing, and a larger `--n-trials`
extends the study to exactly that many. Ctrl-C (and SIGTERM) ends the running trial as FAIL
with reason `interrupted`; the next run retries it first, with the same params.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState

from automl_clf.data.dataset import load_dataset
from automl_clf.data.preprocess import Decoding
from automl_clf.errors import StudyError
from automl_clf.models.factory import check_backbones
from automl_clf.search.objective import INTERRUPTED, Objective, SearchObserver
from automl_clf.search.study import FINISHED, finished_trials, open_study
from automl_clf.spec.models import Spec


@dataclass
class SearchResult:
    study: optuna.Study
    target: int  # finished trials the study should hold
    n_finished: int  # finished trials it holds now
    n_ran: int  # trials this run started (any state)

    @property
    def complete(self) -> bool:
        return self.n_finished >= self.target


class _FailureLimit:
    """Stops the study after `limit` trials of this run failed in a row (a broken config)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_a_row = 0
        self.last_reason = ""
        self.hit = False

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state != TrialState.FAIL:
            self.in_a_row = 0
            return
        self.in_a_row += 1
        self.last_reason = str(trial.user_attrs.get("fail_reason", "unknown"))
        if self.in_a_row >= self.limit:
            self.hit = True
            study.stop()


class _Notify:
    def __init__(self, observer: SearchObserver | None) -> None:
        self.observer = observer
        self.n_ran = 0

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.n_ran += 1
        if self.observer is not None:
            self.observer.trial_finished(study, trial)


def run_search(
    spec: Spec,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    observer: SearchObserver | None = None,
) -> SearchResult:
    """Create or resume the spec's study and run trials until it holds `n_trials` finished.

    Raises:
        DataError: the data set is unusable (before any trial starts).
        StudyError: the study is incompatible, or too many trials failed in a row.
        KeyboardInterrupt: Ctrl-C or SIGTERM; the running trial is already FAIL (interrupted).
    """
    target = n_trials or spec.study.n_trials
    dataset = load_dataset(spec.data)
    check_backbones(spec)
    study = open_study(spec, dataset)
    n_done = len(finished_trials(study))
    if n_done >= target:
        return SearchResult(study, target, n_done, 0)
    dataset.arrays(Decoding.of(spec.data))  # decode once, before any trial's clock starts
    if observer is not None:
        observer.search_started(n_done, target)
    _requeue_interrupted(study)
    failures = _FailureLimit(spec.study.max_consecutive_failures)
    notify = _Notify(observer)
    with _sigterm_as_interrupt():
        study.optimize(
            Objective(spec, dataset, observer),
            timeout=timeout if timeout is not None else spec.study.timeout,
            catch=(Exception,),
            callbacks=[MaxTrialsCallback(target, states=FINISHED), failures, notify],
            gc_after_trial=True,
        )
    if failures.hit:
        raise StudyError(
            f"{failures.in_a_row} trials failed in a row, the last with: {failures.last_reason}. "
            "Fix the spec (see `autoclf validate`), then rerun to resume the study"
        )
    return SearchResult(study, target, len(finished_trials(study)), notify.n_ran)


def _requeue_interrupted(study: optuna.Study) -> None:
    """Queue once more, with the same params, each trial a Ctrl-C or SIGTERM cut short."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for trial in trials:
        if (
            trial.state == TrialState.FAIL
            and trial.user_attrs.get("fail_reason") == INTERRUPTED
            and trial.number not in retried
        ):
            origin = trial.user_attrs.get("checkpoint_of", trial.number)
            study.enqueue_trial(
                trial.params, user_attrs={"retry_of": trial.number, "checkpoint_of": origin}
            )


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so a killed search also leaves no trial RUNNING."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
