"""One total time budget for everything the user waits for: search, final model, test, export.

`autoclf run SPEC --time 15m --export DIR` (or `study.budget`) gives the whole job one wall-clock
budget, counted from the command's start. The plan splits it in two, and keeps re-planning as
the study measures itself:

    search  until  deadline − final step × (1 + margin)
    final   retrain the best configuration (when it fits), test it, write the export

(with `final.retrain: auto` the final step's reserve holds only the retrains that still fit in
what is left: one that does not will not run, and the search keeps its time).

The final step is estimated from the study's own measurements — the chosen members' measured
seconds per epoch, scaled to the retrain's data (train+val) and epoch count and to the pace of
a retrain that trains alone on all the threads (final/plan.py) — plus the cost of
each part of the export (test, weights and report text, latency; then, as far as
`OPTIONAL_SHARE` of the budget allows, the report's figures and heatmaps, TorchScript,
test-time augmentation and ONNX), measured on the first final step of a study and stored with
it (`FINAL_PRIORS` before that). The final step itself is anytime too (final/allowance.py): what
does not fit when it gets there is skipped and named. Trials stop at the search deadline: an
epoch that would end past it is not started, and one running past it is abandoned; the trial
keeps its best finished epoch (`search/objective.py`). If, at the end, a retrain no longer
fits, the best trial's own best-epoch weights are exported instead (`final.retrain: auto`).

Everything here is arithmetic over an injectable clock, so the split is tested without waiting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from automl_clf.errors import SpecError
from automl_clf.search.record import TrialRecord
from automl_clf.spec.duration import format_duration

Clock = Callable[[], float]  # seconds, monotonic

# Seconds each part of the final step takes before a study has measured its own (measured with
# bench/budget_load.py on 2 CPU cores: the plain CNN and small timm models on digits and 128 px
# photos; the figures took 1.9-4.2 s, every other part under 0.2 s); replaced by the study's
# measurements (`StudyRecord.final_costs`) once it has them. `tta` is per view. (The priors
# before, 2-10 times these, held a tenth of a one-minute budget back from the search for nothing.)
FINAL_PRIORS: dict[str, float] = {
    "test": 0.2,  # the final model on the test split, per member
    "write": 0.3,  # weights, model.json, spec.yaml, the report's text
    "latency": 0.3,  # batch-1 CPU latency (bounded inside, models/factory.py)
    "figures": 3.0,  # matplotlib: confusion matrices, curves, previews, mistakes
    "heatmaps": 0.3,  # Grad-CAM of the ~30 test images the report shows (final/explain.py)
    "torchscript": 0.5,  # trace, save, load back, parity on the test split
    "tta": 0.2,  # one test-time augmentation view over the test split
    # torch.export + onnxscript dominate, whatever the model's size: 2.5 s on an idle machine
    # (the final step scales priors by the CPU contention: 5.7-8.5 s beside 4 busy loops)
    "onnx": 3.0,
}
REQUIRED_PARTS = ("test", "write", "latency")  # the export is not an export without them
OPTIONAL_PARTS = ("figures", "heatmaps", "torchscript", "tta", "onnx")  # planned in this order …
OPTIONAL_SHARE = 0.10  # … while they add up to at most this share of the whole budget
MARGIN = 0.10  # the final step's estimate is inflated by this share …
SLACK_S = 1.0  # … plus this many seconds (process exit, a late epoch)
REPLAN_EVERY_S = 2.0  # a running search re-estimates its final step at most this often


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
    required_s: float | None = None  # the export's required parts alone (None: all of it)
    retrains_optional: bool = True  # `final.retrain: auto`: one that does not fit is left out

    @property
    def retrain_s(self) -> float:
        return sum(self.retrain_each_s)

    @property
    def total_s(self) -> float:
        return self.retrain_s + self.export_s

    def with_margin(self, members: int | None = None, *, optional: bool = True) -> float:
        """The estimate with the margin, retraining all members or the first `members`; with
        the export's required parts only when not `optional` (what a retrain is weighed
        against: the final step leaves the optional parts out first, final/allowance.py)."""
        retrain = sum(self.retrain_each_s[:members])
        export = self.export_s if optional or self.required_s is None else self.required_s
        return (retrain + export) * (1.0 + MARGIN) + SLACK_S

    def retrains_fitting(self, left_s: float) -> int:
        """How many retrains (best first) fit in `left_s`, as the final step decides
        (final/allowance.py): a retrain goes before the export's optional parts, so each is
        weighed with the required parts alone. All of them when they are not optional."""
        if not self.retrains_optional:
            return len(self.retrain_each_s)
        fitting = [
            k
            for k in range(len(self.retrain_each_s) + 1)
            if self.with_margin(k, optional=False) <= left_s
        ]
        return max(fitting, default=0)


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


def part_cost(costs: Mapping[str, float] | None, part: str) -> float:
    """Seconds one part of the final step takes: as the study measured it, else the prior."""
    value = (costs or {}).get(part)
    return value if value is not None and value >= 0 else FINAL_PRIORS.get(part, 1.0)


def estimate_export_s(
    costs: Mapping[str, float] | None,
    *,
    members: int = 1,
    tta_views: int = 0,
    budget_s: float | None = None,
) -> float:
    """Seconds of the final step beyond the retrain: the required parts, then the optional ones
    in `OPTIONAL_PARTS` order while they add up to `OPTIONAL_SHARE` of `budget_s` (all of them
    without a budget). A part measured by this study is taken as measured; a prior per member
    (the test) or per view (tta) is scaled."""
    test = _test_s(costs, members)
    scale = {"test": test, "tta": test * tta_views if tta_views else 0.0}
    required = estimate_required_s(costs, members=members)
    room = math.inf if budget_s is None else OPTIONAL_SHARE * budget_s
    optional = 0.0
    for part in OPTIONAL_PARTS:
        seconds = scale.get(part, part_cost(costs, part))
        if optional + seconds > room:
            break
        optional += seconds
    return required + optional


def estimate_required_s(costs: Mapping[str, float] | None, *, members: int = 1) -> float:
    """Seconds of the export's required parts (`REQUIRED_PARTS`), as `estimate_export_s`
    counts them."""
    test = _test_s(costs, members)
    return sum(test if p == "test" else part_cost(costs, p) for p in REQUIRED_PARTS)


def _test_s(costs: Mapping[str, float] | None, members: int) -> float:
    """The test of the final model: as measured (all members at once), else the prior per
    member."""
    return part_cost(costs, "test") * (1 if "test" in (costs or {}) else members)


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
    replan: Callable[[], FinalEstimate] | None = field(default=None, repr=False, compare=False)
    _replanned_at: float = field(default=-math.inf, repr=False, compare=False)

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
        final step has been estimated). While `follow` has a re-planner, the estimate is
        brought up to date first (at most every `REPLAN_EVERY_S`).

        The reserve holds the retrains that still fit in what is left (`retrains_fitting`),
        not all of them: a retrain that no longer fits will not run, and holding its time
        back would end the search for nothing. A trial that became best in the search's last
        minutes with a slow retrain (photos at 600 s beside 2 busy loops: 2 m 44 s, with
        2 m 56 s left) had stopped the search at once, then its retrain did not fit either,
        and the job ended at 0.72 of its budget; now the search goes on to the export's
        reserve and the trial is exported as searched."""
        if self.replan is not None and self.clock() - self._replanned_at >= REPLAN_EVERY_S:
            self._replanned_at = self.clock()
            self.final_estimate = self.replan()
        estimate = self.final_estimate
        if estimate is None:
            return self.deadline
        return self.deadline - estimate.with_margin(estimate.retrains_fitting(self.left_s))

    def reserve(self, estimate: FinalEstimate) -> None:
        """Keep `estimate` (with the margin) for the final step from now on."""
        self.final_estimate = estimate

    def follow(self, replan: Callable[[], FinalEstimate] | None) -> None:
        """Re-estimate the final step with `replan` whenever the search deadline is read (the
        running trials read it each step), not only between this worker's trials: a trial that
        ends in another worker changes which members the final step would retrain, and a
        reserve planned for a slow member that is no longer chosen would cut the search early
        (bench/budget_load.py: digits at 60 s reserved 20 s for a final step that took 13 s).
        None stops following. Process-local: a pickled budget (a `--jobs` helper's) drops it."""
        self.replan = replan
        self._replanned_at = -math.inf

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["replan"], state["_replanned_at"] = None, -math.inf
        return state

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
    costs: Mapping[str, float] | None = None,
    tta_views: int = 0,
    budget_s: float | None = None,
) -> FinalEstimate:
    """The final step's cost for the study so far.

    `timings` are the trials the final step would use, best first (the members an ensemble
    selection would choose); before any trial has finished, the reserve is the export's alone
    and the first trial's epochs are checked against the budget as they run. `retrain: never`
    reserves no retrain; `auto` and `always` reserve one, so that `auto` retrains whenever the
    plan held. `costs`: the study's measured final step (`StudyRecord.final_costs`).
    """
    export_s = estimate_export_s(costs, members=members, tta_views=tta_views, budget_s=budget_s)
    required_s = estimate_required_s(costs, members=members)
    if retrain == "never" or not timings:
        return FinalEstimate((), export_s, required_s)
    each = tuple(estimate_retrain_s(t, sizes, train_on=train_on) for t in timings[:members])
    return FinalEstimate(each, export_s, required_s, retrains_optional=retrain == "auto")


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
    return min(members, estimate.retrains_fitting(budget.left_s))


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
