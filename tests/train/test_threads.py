"""The thread governor on a simulated machine (an injected clock whose steps take what the
machine says for the thread count in effect), and the thread count of real training runs: a
budgeted run on the CPU is governed, an unbudgeted one keeps its count."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
import torch

from automl_clf.machine import usable_cpus
from automl_clf.search.budget import Budget
from automl_clf.train import train_config
from automl_clf.train.threads import RECHECK_S, ThreadGovernor, run_threads
from tests.train.test_trainer import config_of


class Machine:
    """Step seconds per thread count, which a test changes as load comes and goes; its clock
    advances by one step's time per step, of which the training thread waited for a CPU the
    share `wait` gives (none on a machine with a free core)."""

    def __init__(self, step_s: dict[int, float], wait: float = 0.0) -> None:
        self.step_s = step_s
        self.wait = wait
        self.now = 0.0
        self.waited = 0.0
        self.threads = 0
        self.steps_at: Counter[int] = Counter()  # steps run per thread count

    def clock(self) -> float:
        return self.now

    def cpu_wait(self) -> float:
        return self.waited

    def set_threads(self, n: int) -> None:
        self.threads = n

    def train(self, governor: ThreadGovernor, steps: int, *, epoch_steps: int = 20) -> None:
        """`steps` steps through `governor.paced`, in epochs of `epoch_steps`, with 5 s of
        evaluation between epochs (which must not count as a step)."""
        while steps > 0:
            for _ in governor.paced(range(min(steps, epoch_steps))):
                self.now += self.step_s[self.threads]
                self.waited += self.step_s[self.threads] * self.wait
                self.steps_at[self.threads] += 1
            steps -= epoch_steps
            self.now += 5.0


def governed(
    machine: Machine, candidates: tuple[int, ...] = (1, 2), recheck_s: float = RECHECK_S
) -> ThreadGovernor:
    return ThreadGovernor(
        candidates,
        set_threads=machine.set_threads,
        clock=machine.clock,
        cpu_wait=machine.cpu_wait,
        recheck_s=recheck_s,
    )


def test_it_keeps_the_faster_count_on_a_quiet_machine() -> None:
    machine = Machine({1: 0.10, 2: 0.06})
    governor = governed(machine)
    machine.train(governor, 40)
    assert governor.choices == [2]
    assert machine.threads == 2
    assert machine.steps_at[1] <= 4  # one round of measurement, then the faster count


def test_under_load_it_chooses_one_thread_and_drops_the_collapsed_count_at_once() -> None:
    machine = Machine({1: 0.10, 2: 2.0})  # a spinning team waiting for a busy core
    governor = governed(machine)
    machine.train(governor, 40)
    assert governor.choices == [1]
    assert machine.threads == 1
    assert machine.steps_at[2] == 1  # one step 20× slower was enough to drop it


@pytest.mark.parametrize(
    ("before", "after", "choices"),
    [
        # two busy loops start: the 2-thread team collapses
        ({1: 0.10, 2: 0.06}, {1: 0.12, 2: 1.5}, [2, 1]),
        # they end: 1 thread's steps get faster, and 2 threads faster still
        ({1: 0.30, 2: 3.0}, {1: 0.10, 2: 0.06}, [1, 2]),
    ],
    ids=["load-arrives", "load-leaves"],
)
def test_it_measures_again_when_the_load_changes(
    before: dict[int, float], after: dict[int, float], choices: list[int]
) -> None:
    machine = Machine(before)
    governor = governed(machine)
    machine.train(governor, 30)
    assert machine.threads == choices[0]
    machine.step_s = after
    machine.train(governor, 20)
    assert governor.choices == choices
    assert machine.threads == choices[1]


def test_a_thread_that_waits_for_a_cpu_tries_no_more_threads() -> None:
    machine = Machine({1: 0.10, 2: 2.0}, wait=0.4)  # busy loops hold the cores
    governor = governed(machine)
    machine.train(governor, 200)  # past the first periodic round
    assert machine.steps_at[2] == 0  # never paid for a collapsed step
    assert set(governor.choices) == {1}
    machine.wait, machine.step_s = 0.0, {1: 0.06, 2: 0.04}  # the loops end
    machine.train(governor, 20)
    assert governor.choices[-1] == 2


def test_more_load_on_one_thread_does_not_try_more_threads() -> None:
    machine = Machine({1: 0.10, 2: 2.0})
    governor = governed(machine, recheck_s=1e6)  # no periodic round in this test
    machine.train(governor, 20)
    machine.step_s = {1: 0.30, 2: 6.0}  # heavier load: more threads cannot have become better
    machine.train(governor, 20)
    machine.step_s = {1: 0.60, 2: 12.0}
    machine.train(governor, 20)
    assert machine.steps_at[2] == 1  # the first round's step only
    assert governor.choices == [1]


def test_a_load_that_comes_and_goes_tries_more_threads_once_per_level() -> None:
    machine = Machine({1: 0.10, 2: 2.0})
    governor = governed(machine, recheck_s=1e6)  # no periodic round in this test
    machine.train(governor, 20)
    for _ in range(5):  # the load dips and comes back, 2 threads still collapsing in the dips
        machine.step_s = {1: 0.05, 2: 1.0}
        machine.train(governor, 10)
        machine.step_s = {1: 0.10, 2: 2.0}
        machine.train(governor, 10)
    assert machine.steps_at[2] == 2  # the first round, then the first dip; not every dip
    machine.step_s = {1: 0.02, 2: 0.01}  # quiet at last: faster than any dip
    machine.train(governor, 20)
    assert machine.threads == 2


def test_it_rechecks_periodically_and_less_often_while_the_choice_holds() -> None:
    machine = Machine({1: 0.10, 2: 0.06})
    governor = governed(machine)
    machine.train(governor, 20)
    steps = int(8 * RECHECK_S / 0.06)  # steady step times, 8 recheck periods of training
    machine.train(governor, steps, epoch_steps=steps)
    # rechecks 30, 60 and 120 s apart (the interval doubling while the choice holds): 3, not 8
    assert governor.choices == [2, 2, 2, 2]
    assert governor.recheck_s == 8 * RECHECK_S
    assert 4 + 3 <= machine.steps_at[1] <= 4 + 3 * 4  # each recheck measured 1 thread again


def test_noise_within_the_change_factor_does_not_trigger_a_round() -> None:
    machine = Machine({1: 0.10, 2: 0.06})
    governor = governed(machine)
    machine.train(governor, 20)
    for step_s in (0.07, 0.05, 0.08, 0.06, 0.075):
        machine.step_s = {1: 0.10, 2: step_s}
        machine.train(governor, 5)
    assert governor.choices == [2]


def test_evaluation_between_epochs_is_not_a_step() -> None:
    machine = Machine({1: 0.10, 2: 0.06})
    governor = governed(machine, recheck_s=1e6)
    # 5 s of evaluation after every 2 steps: counted as steps, they would fill every median
    machine.train(governor, 200, epoch_steps=2)
    assert governor.choices == [2]
    assert max(governor.steps) < 1.0


def test_three_candidates_pick_the_middle_one() -> None:
    machine = Machine({1: 0.10, 2: 0.05, 4: 0.20})
    governor = governed(machine, (4, 1, 2))
    machine.train(governor, 40)
    assert governor.choices == [2]


def test_a_single_candidate_is_kept() -> None:
    machine = Machine({2: 0.06})
    governor = governed(machine, (2,))
    machine.train(governor, 20)
    machine.step_s = {2: 0.5}
    machine.train(governor, 20)
    assert set(governor.choices) == {2}
    assert machine.threads == 2


def test_a_thread_count_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ThreadGovernor((0, 2))


def test_run_threads_holds_a_fixed_count_and_restores_torchs() -> None:
    before = torch.get_num_threads()
    with run_threads(1, governed=True) as governor:
        assert governor is None  # train.threads set: the user's count holds
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_run_threads_governs_only_when_asked_and_there_is_more_than_one_cpu() -> None:
    before = torch.get_num_threads()
    with run_threads(None, governed=False) as governor:
        assert governor is None
        assert torch.get_num_threads() == min(before, usable_cpus())
    with run_threads(None, governed=True) as governor:
        share = min(before, usable_cpus())
        assert (governor is not None) == (share > 1)
        if governor is not None:
            assert governor.candidates[0] == 1 and governor.candidates[-1] == share
    assert torch.get_num_threads() == before


many_cpus = pytest.mark.skipif(
    min(torch.get_num_threads(), len(os.sched_getaffinity(0))) < 2,
    reason="a governor needs 2 CPUs to choose between",
)


@many_cpus
def test_a_budgeted_run_on_the_cpu_is_governed(digits_root: Path, tmp_path: Path) -> None:
    config, dataset = config_of(digits_root, tmp_path, train={"epochs": 2, "batch_size": 8})
    trained = train_config(config, dataset, deadline=Budget.start(3600))
    # the governor's first round starts on 1 thread (then tries the share, unless the machine
    # is too busy to have a core free); an unbudgeted run trains on the share alone
    share = min(torch.get_num_threads(), usable_cpus())
    assert trained.fit.threads[0] == 1
    assert set(trained.fit.threads) <= {1, share}


@many_cpus
def test_an_unbudgeted_run_keeps_its_thread_count(digits_root: Path, tmp_path: Path) -> None:
    config, dataset = config_of(digits_root, tmp_path, train={"epochs": 2, "batch_size": 8})
    before = torch.get_num_threads()
    trained = train_config(config, dataset)
    assert trained.fit.threads == (min(before, usable_cpus()),)
    assert torch.get_num_threads() == before


@many_cpus
def test_train_threads_is_kept_under_a_budget(digits_root: Path, tmp_path: Path) -> None:
    config, dataset = config_of(
        digits_root, tmp_path, train={"epochs": 2, "batch_size": 8, "threads": 2}
    )
    trained = train_config(config, dataset, deadline=Budget.start(3600))
    assert trained.fit.threads == (2,)
