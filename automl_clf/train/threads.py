"""CPU threads for training by measured step time, for runs where throughput is what counts.

torch's CPU kernels run on an OpenMP team (GNU libgomp in the official wheels) whose threads
spin while they wait for each other. On a quiet 2-core machine 2 threads train a small CNN
~1.5× faster than 1; on a busy one a spinning thread holds a core that the thread it waits for
needs, and 2 threads fall to 1/5–1/20 of 1 thread's speed (bench/threads_load.py: digits, 16 px,
with 2 and 4 busy loops beside it; `make demo`'s final retrain ran 20 s per epoch where a
1-thread trial took 0.4 s). No fixed count is right for both machines, so under a time budget
the trainer asks `ThreadGovernor`: it times a few steps at each candidate count (1 and this
process's share of the CPUs, `run_threads`), keeps the faster, and measures again when the
step time moves markedly (load arrived or left) and every `recheck_s` seconds.

Changing the count changes the order of floating-point sums, so a run with a governor is not
reproducible bit for bit; without a time budget the count stays fixed (`run_threads`).

libgomp's spinning can also be cut with OMP_WAIT_POLICY=PASSIVE or a small GOMP_SPINCOUNT, read
once when torch loads. autoclf leaves them alone: passive waiting costs 15–30 % of the quiet
machine's speed at every step, and under load the governor already avoids the spinning team
by choosing 1 thread (measured in bench/threads_load.py, see the README's Benchmarks).
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import torch

from automl_clf.machine import cpu_wait_seconds, usable_cpus

T = TypeVar("T")

WARMUP_STEPS = 1  # after a change of count, not timed (OpenMP forms a new team)
TIMED_STEPS = 3  # the median of this many steps is a count's step time
CHANGE = 1.5  # a step time this factor slower or faster than the chosen count's: measure again
LOSING = 2.0  # a step this factor slower than the best count's: stop measuring that count
# the share of a step's wall time the training thread waited for a CPU (runnable, not running)
# above which no more threads are tried: no core is free for them. Measured on 2 cores: 0.03
# alone, 0.35–0.67 beside 1–4 busy loops
BUSY = 0.2
RECHECK_S = 30.0  # measure again after this many seconds on one count …
RECHECK_GROWTH = 8  # … doubling while the choice holds, up to this many times as long


class ThreadGovernor:
    """Chooses torch's CPU thread count among `candidates` by the time of training steps.

    It sees the steps through `paced` (the time between one batch and the next), so the step
    itself needs no hook. Rounds of measurement: each candidate runs `WARMUP_STEPS` untimed
    and `TIMED_STEPS` timed steps (a count whose step is already `LOSING` times slower than the
    best measured is dropped at once: a step of a spinning team under load can cost fifty of
    one thread's), then the fastest count stays. A new round counts the steps just seen as the
    chosen count's time and measures other counts: fewer threads when the median of the last
    `TIMED_STEPS` steps grows by `CHANGE` (load came, which never favours more threads), more
    when it shrinks by `CHANGE` (load went) below where they last lost, all every `recheck_s`
    seconds; more threads are not tried while the training thread waits for a CPU (`BUSY`).
    Measuring only the direction the load moved keeps a machine whose load comes and goes from
    paying for a collapsed step at each change.

    Args:
        candidates: thread counts to choose among, e.g. (1, 2).
        set_threads: applies a count (torch.set_num_threads).
        clock: seconds, monotonic; tests pass their own.
        cpu_wait: seconds the training thread has waited for a CPU so far (machine.py).
        recheck_s: seconds on one count before the first periodic round.
    """

    def __init__(
        self,
        candidates: Iterable[int],
        *,
        set_threads: Callable[[int], None] = torch.set_num_threads,
        clock: Callable[[], float] = time.perf_counter,
        cpu_wait: Callable[[], float] = cpu_wait_seconds,
        recheck_s: float = RECHECK_S,
    ) -> None:
        self.candidates = tuple(sorted(set(candidates)))
        if not self.candidates or self.candidates[0] < 1:
            raise ValueError(f"thread counts must be at least 1, got {candidates!r}")
        self.set_threads = set_threads
        self.clock = clock
        self.cpu_wait = cpu_wait
        self.first_recheck_s = recheck_s
        self.recheck_s = recheck_s  # seconds from a choice to the next round
        self.threads = 0  # the count in effect; 0 before the first step
        self.chosen_s = 0.0  # the chosen count's step time when it was chosen, seconds
        self.decided_at = 0.0  # clock time of the last choice
        self.measured: dict[int, float] = {}  # this round's step time per count, seconds
        self.to_measure: list[int] = []  # this round's counts not measured yet
        self.steps: list[float] = []  # step seconds at `threads` since it was set
        self.waits: list[float] = []  # of which the training thread waited for a CPU
        self.choices: list[int] = []  # the count each round chose, in order
        # count -> the winner's step time when that count last lost to fewer threads, seconds
        self.lost_at: dict[int, float] = {}
        self.used: list[int] = []  # every count set, in order (measured or chosen)
        self._round(None, list(self.candidates))

    def paced(self, batches: Iterable[T]) -> Iterator[T]:
        """`batches` unchanged, timing the steps in between: the gap from one batch to the
        next is one training step (and the next batch's loading). The first batch of each
        call has no gap before it, so what runs between epochs (evaluation) is not timed."""
        last = None
        for batch in batches:
            now = (self.clock(), self.cpu_wait())
            if last is not None:
                self.observe(now[0] - last[0], now[1] - last[1])
            last = now
            yield batch

    def observe(self, seconds: float, waited: float = 0.0) -> None:
        """One step of `seconds` at the count in effect, `waited` of them for a CPU; may set
        another count."""
        self.steps.append(seconds)
        self.waits.append(waited)
        if self.to_measure or self.threads not in self.measured:
            self._measuring(seconds)
        else:
            self._watching()

    def _measuring(self, seconds: float) -> None:
        best = min(self.measured.values(), default=None)
        timed = self.steps[WARMUP_STEPS:]
        if best is not None and seconds > LOSING * best:
            self.measured[self.threads] = seconds  # clearly losing: no more steps of it
        elif len(timed) >= TIMED_STEPS:
            self.measured[self.threads] = statistics.median(timed)
        else:
            return
        self.to_measure = self._worth_trying(self.to_measure)
        if self.to_measure:
            self._use(self.to_measure.pop(0))
        else:
            self._choose()

    def _watching(self) -> None:
        """On the chosen count: measure again when its steps slow down (load came: fewer
        threads may win now) or speed up (load went: more may), and every `recheck_s`."""
        del self.steps[:-TIMED_STEPS]  # only the latest steps count from here
        del self.waits[:-TIMED_STEPS]
        median = statistics.median(self.steps)
        if len(self.steps) == TIMED_STEPS and median > CHANGE * self.chosen_s:
            self._round(median, [c for c in self.candidates if c < self.threads])
        elif len(self.steps) == TIMED_STEPS and median * CHANGE < self.chosen_s:
            # more threads, if steps got faster by `CHANGE` than when each last lost: a load
            # that comes and goes tries them once per level it falls to, not at every dip
            more = [
                c
                for c in self.candidates
                if c > self.threads and median * CHANGE < self.lost_at.get(c, math.inf)
            ]
            self._round(median, more)
        elif self.clock() - self.decided_at >= self.recheck_s:
            self._round(median, [c for c in self.candidates if c != self.threads])

    def _round(self, current_s: float | None, counts: list[int]) -> None:
        """Measure `counts` in order, the count in effect taking `current_s` per step (None at
        the start, when every count is measured, 1 first: it never collapses). With nothing
        to measure (no fewer threads than 1 to try when load comes), `current_s` becomes the
        new reference, so that the next change is measured from it."""
        self.measured = {self.threads: current_s} if current_s is not None else {}
        self.to_measure = self._worth_trying(counts)
        if self.to_measure:
            self._use(self.to_measure.pop(0))
        elif current_s is not None:
            self.chosen_s = current_s

    def _worth_trying(self, counts: list[int]) -> list[int]:
        """`counts` without those above the count in effect when its steps waited for a CPU
        more than `BUSY` of the time: more threads would only wait longer, and a spinning team
        costs its probe step many times over."""
        waited = sum(self.waits) / max(sum(self.steps), 1e-9)
        return counts if waited <= BUSY else [c for c in counts if c < self.threads]

    def _choose(self) -> None:
        fastest = min(self.measured, key=lambda c: (self.measured[c], c))
        held = self.choices and self.choices[-1] == fastest
        self.chosen_s = self.measured[fastest]
        self.decided_at = self.clock()
        # a choice that held: look again less often; a change: as often as at first
        longest = RECHECK_GROWTH * self.first_recheck_s
        self.recheck_s = min(2 * self.recheck_s, longest) if held else self.first_recheck_s
        self.choices.append(fastest)
        for count in self.measured:
            if count > fastest:
                self.lost_at[count] = self.chosen_s
        self.lost_at.pop(fastest, None)
        self.measured = {fastest: self.chosen_s}
        self._use(fastest, keep_steps=fastest == self.threads)

    def _use(self, threads: int, *, keep_steps: bool = False) -> None:
        if threads != self.threads:
            self.set_threads(threads)
            self.threads = threads
            self.used.append(threads)
        if not keep_steps:
            self.steps, self.waits = [], []


def share() -> int:
    """This process's share of the CPUs: torch's count (which `--jobs` lowers for each of its
    processes, and a user may set), capped at the CPUs it may use (machine.py): torch counts the
    host's cores, not a container's CPU quota."""
    return max(1, min(torch.get_num_threads(), usable_cpus()))


@contextlib.contextmanager
def run_threads(fixed: int | None, *, governed: bool) -> Iterator[ThreadGovernor | None]:
    """torch's CPU threads while one run trains, restored after it.

    `fixed` (the spec's `train.threads`) holds the count; otherwise the run trains on `share()`
    threads, or, when `governed` (a run under a time budget on the CPU) and the share is more
    than 1, yields a `ThreadGovernor` over 1, half the share (from 4 up) and the share.
    """
    before = torch.get_num_threads()
    threads = fixed if fixed is not None else share()
    torch.set_num_threads(threads)
    governor = None
    if governed and fixed is None and threads > 1:
        governor = ThreadGovernor((1, threads // 2 if threads >= 4 else 1, threads))
    try:
        yield governor
    finally:
        torch.set_num_threads(before)
