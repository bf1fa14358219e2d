"""One total time budget for everything the user waits for: search, final model, test, export.

`autoclf run SPEC --time 15m --export DIR` (or `study.budget`) gives the whole job one wall-clock
budget, counted from the command's start. The plan splits it in two, and keeps re-planning as
the study measures itself:

    search  until  deadline − final step × (1 + margin)
    final   retrain the best configuration (when it fits), test it, write the export

The final step is estimated from the study's own measurements — the best trial's measured
seconds per epoch, scaled to the retrain's data (train+val) and epoch count — plus the export's
cost (formats, parity checks, report), which is measured on the first export of a study and
stored with it (a prior before that). Trials stop at the search deadline: an epoch that would
end past it is not started, and one running past it is abandoned; the trial keeps its best
finished epoch (`search/objective.py`). If, at the end, a retrain no longer fits, the best
trial's own best-epoch weights are exported instead (`final.retrain: auto`).

Everything here is arithmetic over an injectable clock, so the split is tested without waiting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import optuna

from automl_clf.errors import SpecError
from automl_clf.search.record import StudyRecord, TrialRecord
from automl_clf.spec.duration import format_duration
from automl_clf.spec.models import FinalSpec

Clock = Callable[[], float]  # seconds, monotonic

# Seconds the export takes before a study has measured one (formats with their parity checks,
# report figures), on the small models of a first search; replaced by the study's own
# measurement (`StudyRecord.export_seconds`) once it has one.
EXPORT_PRIOR_S = 4.5
MARGIN = 0.15  # the final step's estimate is inflated by this share …
SLACK_S = 1.0  # … plus this many seconds (process exit, a late epoch)


@dataclass(frozen=True)
class DataSizes:
    """Images per split: what scales the retrain and the export."""

    n_train: int
    n_val: int
    n_test: int


@dataclass(frozen=True)
class TrialTiming:
    """What a finished trial measured about its own cost."""

    seconds_per_epoch: float  # training + validation, mean over the epochs it ran
    best_epoch: int  # the retrain trains this many epochs

    @classmethod
    def of(cls, record: TrialRecord) -> TrialTiming | None:
        """From a trial's record (`train_seconds`, `epochs_run`, `best_epoch`); None when it
        has not measured itself (it failed before its first epoch, or predates these fields)."""
        seconds, epochs = record.train_seconds, record.epochs_run
        if seconds is None or epochs is None or epochs < 1 or not math.isfinite(seconds):
            return None
        best = record.best_epoch if record.best_epoch is not None else epochs
        return cls(seconds / epochs, max(best, 1))


@dataclass(frozen=True)
class FinalEstimate:
    """Seconds the final step is expected to take, before the margin."""

    retrain_each_s: tuple[float, ...]  # per member, best first; () when nothing retrains
    export_s: float  # test evaluation, formats with parity checks, report

    @property
    def retrain_s(self) -> float:
        return sum(self.retrain_each_s)

    @property
    def total_s(self) -> float:
        return self.retrain_s + self.export_s

    def with_margin(self, members: int | None = None) -> float:
        """The estimate with the margin, retraining all members or the first `members`."""
        retrain = sum(self.retrain_each_s[:members])
        return (retrain + self.export_s) * (1.0 + MARGIN) + SLACK_S


def estimate_retrain_s(
    timing: TrialTiming, sizes: DataSizes, *, train_on: str, members: int = 1
) -> float:
    """Retraining `members` models like `timing`'s trial on `train_on` for its best epochs.

    An epoch's cost scales with the images it trains on: train+val has (n_train + n_val) /
    n_train times the trial's training images (the retrain skips validation, which the trial's
    epoch time includes: a small overestimate, on purpose).
    """
    scale = (sizes.n_train + sizes.n_val) / max(sizes.n_train, 1) if train_on == "train+val" else 1
    return members * timing.best_epoch * timing.seconds_per_epoch * scale


def estimate_export_s(sizes: DataSizes, measured: float | None, members: int = 1) -> float:
    """The export's seconds: the study's last measured export, else the prior; scaled for the
    members of an ensemble (each is evaluated and written)."""
    base = measured if measured is not None and measured > 0 else EXPORT_PRIOR_S
    return base * (1.0 + 0.25 * (members - 1))


@dataclass
class Phase:
    """One part of the job, as planned and as it went."""

    name: str
    planned_s: float | None = None
    actual_s: float | None = None


@dataclass
class Budget:
    """A total wall-clock budget, counted from `started` on `clock`.

    `search_deadline` moves as the study learns what its final step costs (`plan_final`); the
    search loop and the running trial read it each time they decide whether to go on.
    """

    total_s: float
    started: float
    clock: Clock = time.monotonic
    phases: list[Phase] = field(default_factory=list)
    final_estimate: FinalEstimate | None = None
    epoch_estimate_s: float = 0.0  # one epoch of a new trial, before the study has measured any

    @classmethod
    def start(
        cls, total_s: float, clock: Clock = time.monotonic, started: float | None = None
    ) -> Budget:
        return cls(total_s, clock() if started is None else started, clock)

    @property
    def deadline(self) -> float:
        return self.started + self.total_s

    @property
    def elapsed_s(self) -> float:
        return self.clock() - self.started

    @property
    def left_s(self) -> float:
        return self.deadline - self.clock()

    @property
    def search_deadline(self) -> float:
        """When the search must stop so the final step fits (the deadline itself until the
        final step has been estimated)."""
        reserve = self.final_estimate.with_margin() if self.final_estimate is not None else 0.0
        return self.deadline - reserve

    def reserve(self, estimate: FinalEstimate) -> None:
        """Keep `estimate` (with the margin) for the final step from now on."""
        self.final_estimate = estimate

    def search_left_s(self) -> float:
        return self.search_deadline - self.clock()

    def fits(self, seconds: float) -> bool:
        """Whether `seconds` of work started now ends before the search deadline."""
        return self.clock() + seconds <= self.search_deadline

    def passed(self) -> bool:
        """Whether the search deadline has passed (a running trial stops)."""
        return self.clock() > self.search_deadline

    def record(
        self, name: str, *, planned_s: float | None = None, actual_s: float | None = None
    ) -> Phase:
        """Note a phase's planned or actual seconds (the summary's table)."""
        for phase in self.phases:
            if phase.name == name:
                break
        else:
            phase = Phase(name)
            self.phases.append(phase)
        if planned_s is not None:
            phase.planned_s = planned_s
        if actual_s is not None:
            phase.actual_s = actual_s
        return phase


def plan_final_estimate(
    timings: Sequence[TrialTiming],
    sizes: DataSizes,
    *,
    train_on: str,
    retrain: str,
    members: int = 1,
    export_measured: float | None = None,
) -> FinalEstimate:
    """The final step's cost for the study so far.

    `timings` are the trials the final step would use, best first (the top `members` of an
    ensemble); before any trial has finished, the reserve is the export's alone and the first
    trial's epochs are checked against the budget as they run. `retrain: never` reserves no
    retrain; `auto` and `always` reserve one, so that `auto` retrains whenever the plan held.
    """
    export_s = estimate_export_s(sizes, export_measured, members)
    if retrain == "never" or not timings:
        return FinalEstimate((), export_s)
    each = tuple(estimate_retrain_s(t, sizes, train_on=train_on) for t in timings[:members])
    return FinalEstimate(each, export_s)


@dataclass(frozen=True)
class FinalPlanner:
    """The final step's cost for a study as it stands: its best trials' measured pace, scaled
    to the retrain's data, plus the export (the study's last measured export, else the prior).

    A picklable callable, so the search workers of `--jobs` plan exactly as the main one does.
    """

    final: FinalSpec
    sizes: DataSizes

    def __call__(self, study: optuna.Study) -> FinalEstimate:
        from automl_clf.search.study import ranked_trials

        members = self.final.ensemble
        ranked = ranked_trials(study)[:members]
        timings = [t for t in (TrialTiming.of(TrialRecord.of(r)) for r in ranked) if t]
        return plan_final_estimate(
            timings,
            self.sizes,
            train_on=self.final.train_on,
            retrain=self.final.retrain,
            members=members,
            export_measured=StudyRecord.of(study).export_seconds,
        )


def members_to_retrain(
    retrain: str, estimate: FinalEstimate, budget: Budget | None, members: int
) -> int:
    """How many of `members` (best first) the final step retrains: all with `always`, none
    with `never`; with `auto`, as many as fit, with the export and the margin, in what is left
    of the budget (all when there is no budget). The others are exported as searched."""
    if retrain == "never":
        return 0
    if retrain == "always" or budget is None:
        return members
    estimated = min(members, len(estimate.retrain_each_s))
    fitting = [k for k in range(estimated + 1) if estimate.with_margin(k) <= budget.left_s]
    return max(fitting, default=0)


def check_budget_covers_one_epoch(
    total_s: float, *, elapsed_s: float, epoch_s: float, export_s: float
) -> None:
    """Refuse, before any trial, a budget that cannot fit one epoch and the export.

    Raises:
        SpecError: saying how much the job needs at least.
    """
    need = elapsed_s + (epoch_s + export_s) * (1.0 + MARGIN) + SLACK_S
    if need > total_s:
        raise SpecError(
            f"a time budget of {format_duration(total_s)} is too small: starting took "
            f"{format_duration(elapsed_s)}, one epoch of the first trial takes about "
            f"{format_duration(epoch_s)} and the export about {format_duration(export_s)}; "
            f"give at least --time {math.ceil(need * 1.2)}s"
        )
