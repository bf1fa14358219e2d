"""The final step's time: how much of a budget is left, what each part of the final step is
expected to cost, and what was skipped to keep the deadline.

Under `autoclf run --time` the final step is anytime, like a trial: it stops at the job's
deadline. Its parts, in the order they run:

    required   choose members · test the final model · write the weights, model.json,
               spec.yaml and the report's text (metrics.json, report.md, index.html)
    optional   retrain each member (else its best-epoch weights as searched) · test member 0
               alone beside an ensemble · test-time augmentation · TorchScript and ONNX with
               their parity checks · the report's figures · its heatmaps (final/explain.py)

An optional part runs only when its estimate, with the margin, still fits before the deadline
with the required parts after it (`reserve_s`); a skipped one is named in `skipped`, which the
summary and the report show. A retrain that turns out slower than planned stops as soon as its
pace says it cannot end in time (`RetrainDeadline`), and the member is exported as searched.

Estimates: what this study's last final step measured (`StudyRecord.final_costs`), else
search/budget.py's `FINAL_PRIORS`, the formats' scaled by the CPU contention as the step begins
(`STRETCHED_PARTS`); each part measured now (`timed`) replaces its prior for the rest of this
step and is stored for the next one. Without a budget nothing is ever skipped
(`Allowance.unlimited()`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from automl_clf.search.budget import MARGIN, REQUIRED_PARTS, Clock, part_cost
from automl_clf.spec.duration import format_duration

# The parts whose prior is scaled by the CPU contention: each runs to its end once started
# (ONNX took 2.5 s alone and 5.7-8.5 s beside 4 busy loops on 2 cores). Not the others: the
# required parts stay as the search's reserve planned them (scaled, a retrain it had planned
# for no longer fit), the report's figures stop at the deadline by themselves (scaled, they
# were left out whole with 7.2 s left, and TorchScript with them), the heatmaps and the
# test-time augmentation are estimated from what this step measured.
STRETCHED_PARTS = ("torchscript", "onnx")


@dataclass
class Allowance:
    """What is left of the final step's time, and what each part costs (module docstring)."""

    until: float | None  # the deadline on `clock`; None: no budget, nothing is skipped
    clock: Clock = time.monotonic
    costs: Mapping[str, float] = field(default_factory=dict)  # the study's last final step
    retrain_pace: float = 1.0  # a retrain's epoch against its trial's, before one has run
    contention: float = 1.0  # CPU contention as the step began (machine.py): `STRETCHED_PARTS`
    measured: dict[str, float] = field(default_factory=dict)  # this final step, so far
    skipped: list[str] = field(default_factory=list)  # what was left out, for the summary
    _inner: list[float] = field(default_factory=list, repr=False)  # open `timed` parts' inner time

    @classmethod
    def unlimited(cls) -> Allowance:
        return cls(until=None)

    @property
    def limited(self) -> bool:
        return self.until is not None

    def left_s(self) -> float:
        return math.inf if self.until is None else self.until - self.clock()

    def estimate(self, part: str) -> float:
        """Seconds `part` is expected to take: measured now, else by this study before, else
        the prior (an idle machine's seconds); a format's (`STRETCHED_PARTS`) times the CPU
        contention."""
        value = {**self.costs, **self.measured}.get(part)
        if value is not None and value >= 0:
            return value
        scale = self.contention if part in STRETCHED_PARTS else 1.0
        return part_cost(None, part) * scale

    def reserve_s(self, *parts: str) -> float:
        """What `parts` (default: the required ones) are expected to take, with the margin."""
        return sum(self.estimate(p) for p in parts or REQUIRED_PARTS) * (1.0 + MARGIN)

    def fits(self, seconds: float, *, reserve_s: float = 0.0, margin: bool = True) -> bool:
        """Whether `seconds` of work (with the margin, unless not `margin`) started now ends
        before the deadline with `reserve_s` still left after it."""
        return seconds * (1.0 + MARGIN if margin else 1.0) + reserve_s <= self.left_s()

    def allows(
        self, what: str, seconds: float, *, reserve_s: float = 0.0, margin: bool = True
    ) -> bool:
        """`fits`, and when not, `what` is noted as skipped with the reason."""
        if self.fits(seconds, reserve_s=reserve_s, margin=margin):
            return True
        left = max(self.left_s() - reserve_s, 0.0)
        self.skipped.append(
            f"{what} (about {format_duration(seconds)}; {format_duration(left)} left of the "
            "time budget)"
        )
        return False

    @contextlib.contextmanager
    def timed(self, part: str) -> Iterator[None]:
        """Measure `part` (added up when it runs several times) for the rest of this step's
        estimates and the next final step's (`StudyRecord.final_costs`). A part timed inside
        another (the heatmaps inside the report's figures) counts for itself only, not for
        both."""
        started = self.clock()
        self._inner.append(0.0)
        try:
            yield
        finally:
            spent = self.clock() - started
            inner = self._inner.pop()
            self.measured[part] = self.measured.get(part, 0.0) + spent - inner
            if self._inner:
                self._inner[-1] += spent

    def retrain_deadline(self, steps: int, *, reserve_s: float) -> RetrainDeadline | None:
        """The deadline of one retrain of `steps` training steps that must leave `reserve_s`;
        None without a budget."""
        if self.until is None:
            return None
        return RetrainDeadline(self.until - reserve_s, steps, self.clock)


class RetrainDeadline:
    """A trainer `Deadline` (train/trainer.py) for a retrain that is worth something only
    whole: it passes at `until`, and as soon as the pace says the remaining steps cannot end
    by then, so a retrain that cannot finish stops early and leaves its time to the rest of
    the final step.

    The pace is judged only after `JUDGE_SHARE` of the steps (`MIN_STEPS` and `MIN_SECONDS`
    at least), from the later half of the steps so far: the first steps are still warming up
    (allocations, the thread governor's trials; 1.7 times a steady step on 2 cores), and a
    pace taken from them gave up retrains that would have finished, leaving their planned
    time unused (photos at 600 s: 2 minutes reserved, the retrain stopped, the job ended at
    0.81 of its budget)."""

    MIN_STEPS = 5
    MIN_SECONDS = 0.5
    JUDGE_SHARE = 0.1

    def __init__(self, until: float, steps: int, clock: Clock = time.monotonic) -> None:
        self.until = until
        self.steps = max(steps, 1)
        self.clock = clock
        self.stamps: list[float] = []  # before each step (`passed` is asked before each)
        self.hopeless = False  # the pace said it could not finish in time

    @property
    def done(self) -> int:
        """Steps started so far."""
        return len(self.stamps)

    def fits(self, seconds: float) -> bool:
        return self.clock() + seconds <= self.until

    def passed(self) -> bool:
        now = self.clock()
        if now > self.until:
            return True
        done = self.done
        judged = max(self.MIN_STEPS, math.ceil(self.JUDGE_SHARE * self.steps))
        if done >= judged and now - self.stamps[0] >= self.MIN_SECONDS:
            half = done // 2
            pace = (now - self.stamps[half]) / (done - half)  # the later half's steps
            if now + pace * (self.steps - done) > self.until:
                self.hopeless = True
                return True
        self.stamps.append(now)  # the pace counts from the first step, not the model's building
        return False
