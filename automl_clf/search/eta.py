"""How long the search, a trial, or the final retrain still has to go.

Arithmetic over measured seconds and an injected clock, no I/O, so the live display's ETA is
tested without training or waiting (automl_clf/cli/progress.py renders it):

- a training run (a trial, the final retrain) is paced by its own finished epochs, and before
  its first epoch ends by the batches it has done so far (`RunPace`);
- the search ends when its last missing trial finishes: the trials still to start queue behind
  the running ones, one lane per worker, each taking the study's median trial time
  (`search_eta`). Under a time budget it ends at the budget's search deadline at the latest
  (search/budget.py), which is the ETA as long as the trial count cannot say sooner.

Every estimate is an upper bound for its run: pruning and early stopping only end trials
sooner.
"""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class RunPace:
    """One training run as a display hears it: the epochs it trains at most, the seconds of
    those it finished, and the batches done in the running one.

    `epoch_started` is the clock time the running epoch began: the run's start, then each
    epoch's end (a run of several parts, as the final retrain of several seeds, `restart`s).
    The running epoch's batch rate is measured between its first and its latest batch report,
    so the first batch's warm-up (allocations, lazy initialisation) does not inflate it.
    """

    epochs: int
    epoch_started: float
    epoch_seconds: list[float] = field(default_factory=list)
    step: int = 0  # batches of the running epoch done, as last reported
    n_steps: int = 0  # batches per epoch
    first_report: tuple[float, int] | None = None  # (clock, batches) of the epoch's first
    last_report: tuple[float, int] | None = None  # and of its latest batch report

    @property
    def done(self) -> int:
        return len(self.epoch_seconds)

    def epoch_done(self, seconds: float, now: float) -> None:
        self.epoch_seconds.append(seconds)
        self.restart(now)

    def steps_done(self, step: int, n_steps: int, now: float) -> None:
        self.step, self.n_steps = step, n_steps
        self.last_report = (now, step)
        if self.first_report is None:
            self.first_report = self.last_report

    def restart(self, now: float) -> None:
        """A new epoch (or a new part of the run: setting up its model is no epoch's time)."""
        self.epoch_started = now
        self.step = 0
        self.first_report = self.last_report = None

    def batch_s(self) -> float | None:
        """Seconds a batch of the running epoch takes, from two reports or more."""
        if self.first_report is None or self.last_report is None:
            return None
        (t0, s0), (t1, s1) = self.first_report, self.last_report
        return (t1 - t0) / (s1 - s0) if s1 > s0 else None

    def epoch_s(self) -> float | None:
        """Seconds an epoch takes: the mean of the finished ones, else the running epoch's
        batch rate over the whole epoch; None before either is known."""
        if self.epoch_seconds:
            return statistics.fmean(self.epoch_seconds)
        batch = self.batch_s()
        return None if batch is None else batch * self.n_steps

    def left_s(self, now: float) -> float | None:
        """Seconds until the run's last epoch ends (0 once it has); None while unknown.

        The running epoch ends after its expected length, or after its batches left at the
        measured rate when that is later (an epoch slower than the ones before)."""
        if self.done >= self.epochs:
            return 0.0
        pace = self.epoch_s()
        if pace is None:
            return None
        running = max(pace - (now - self.epoch_started), 0.0)
        batch = self.batch_s()
        if batch is not None:
            running = max(running, batch * (self.n_steps - self.step))
        return running + pace * (self.epochs - self.done - 1)


def typical_trial_s(durations: Sequence[float]) -> float | None:
    """A new trial's expected seconds: the median of the finished ones (pruned trials included,
    as future trials will be pruned as often); None before any finished."""
    return statistics.median(durations) if durations else None


@dataclass(frozen=True)
class Eta:
    seconds: float
    by_budget: bool  # the time budget's search deadline, not the trial count, ends the search


def search_eta(
    *,
    n_left: int | None,
    trial_s: float | None,
    running_left_s: Sequence[float | None],
    workers: int,
    budget_left_s: float | None = None,
) -> Eta | None:
    """When the search ends, in seconds from now; None when nothing can tell yet.

    Args:
        n_left: finished trials still missing from the target (None: no target, as under a
            time budget without n_trials).
        trial_s: a new trial's expected seconds (`typical_trial_s`), None if unknown.
        running_left_s: each running trial's expected seconds left (None: unknown).
        workers: trials that run at once (this command's `--jobs`, and other workers seen).
        budget_left_s: seconds to the time budget's search deadline, or None.
    """
    by_count = None if n_left is None else _count_eta(n_left, trial_s, running_left_s, workers)
    if budget_left_s is None:
        return None if by_count is None else Eta(by_count, by_budget=False)
    budget = max(budget_left_s, 0.0)
    if by_count is not None and by_count < budget:
        return Eta(by_count, by_budget=False)
    return Eta(budget, by_budget=True)


def _count_eta(
    n_left: int, trial_s: float | None, running_left_s: Sequence[float | None], workers: int
) -> float | None:
    """The target's end: the running trials finish first (the n_left-th of them, when they
    are enough), the rest queue on the lane that frees first."""
    if n_left <= 0:
        return 0.0
    if any(left is None for left in running_left_s):
        return None
    running = sorted(max(left or 0.0, 0.0) for left in running_left_s)
    if n_left <= len(running):
        return running[n_left - 1]
    if trial_s is None:
        return None
    lanes = running + [0.0] * max(workers - len(running), 0)
    if not lanes:
        lanes = [0.0]
    heapq.heapify(lanes)
    for _ in range(n_left - len(running)):
        heapq.heappush(lanes, heapq.heappop(lanes) + trial_s)
    return max(lanes)
