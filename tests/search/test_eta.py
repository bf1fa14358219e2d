"""The ETA arithmetic of the live display (search/eta.py): numbers in, seconds out, a clock
that only moves when the test moves it."""

from __future__ import annotations

import pytest

from automl_clf.search.budget import MARGIN, SLACK_S, Budget, FinalEstimate
from automl_clf.search.eta import Eta, RunPace, search_eta, typical_trial_s


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_under_a_time_budget_the_eta_is_the_search_deadline() -> None:
    clock = Clock()
    budget = Budget.start(600.0, clock)
    budget.reserve(FinalEstimate((60.0,), 10.0))  # the final step's share of the 600 s
    clock.now = 100.0
    reserve = 70.0 * (1 + MARGIN) + SLACK_S
    eta = search_eta(
        n_left=None,
        trial_s=20.0,
        running_left_s=[5.0],
        workers=1,
        budget_left_s=budget.search_left_s(),
    )
    assert eta == Eta(pytest.approx(600.0 - reserve - 100.0), by_budget=True)


def test_a_passed_deadline_is_an_eta_of_zero() -> None:
    eta = search_eta(n_left=None, trial_s=None, running_left_s=[], workers=1, budget_left_s=-3)
    assert eta == Eta(0.0, by_budget=True)


def test_with_n_trials_the_eta_is_the_trials_left_times_the_median_trial() -> None:
    trial_s = typical_trial_s([10.0, 30.0, 20.0, 1000.0])  # one slow outlier barely counts
    assert trial_s == 25.0
    eta = search_eta(n_left=4, trial_s=trial_s, running_left_s=[], workers=1)
    assert eta == Eta(100.0, by_budget=False)


def test_the_running_trial_finishes_before_the_next_ones_start() -> None:
    eta = search_eta(n_left=3, trial_s=10.0, running_left_s=[5.0], workers=1)
    assert eta == Eta(25.0, by_budget=False)  # 5 s left of it, then two trials of 10 s


def test_parallel_workers_share_the_trials_left() -> None:
    """Two lanes, free after 5 s and 8 s: the two trials to start end at 15 s and 18 s."""
    eta = search_eta(n_left=4, trial_s=10.0, running_left_s=[5.0, 8.0], workers=2)
    assert eta == Eta(18.0, by_budget=False)
    idle = search_eta(n_left=4, trial_s=10.0, running_left_s=[], workers=4)
    assert idle == Eta(10.0, by_budget=False)


def test_when_the_running_trials_are_enough_the_eta_is_when_enough_of_them_end() -> None:
    eta = search_eta(n_left=1, trial_s=None, running_left_s=[7.0, 3.0], workers=2)
    assert eta == Eta(3.0, by_budget=False)


def test_a_target_reached_before_the_deadline_ends_the_search_sooner() -> None:
    sooner = search_eta(n_left=1, trial_s=10.0, running_left_s=[], workers=1, budget_left_s=100)
    assert sooner == Eta(10.0, by_budget=False)
    later = search_eta(n_left=20, trial_s=10.0, running_left_s=[], workers=1, budget_left_s=100)
    assert later == Eta(100.0, by_budget=True)


def test_nothing_measured_yet_means_no_eta_but_the_budget() -> None:
    assert search_eta(n_left=3, trial_s=None, running_left_s=[None], workers=1) is None
    assert search_eta(n_left=3, trial_s=None, running_left_s=[], workers=1) is None
    with_budget = search_eta(
        n_left=3, trial_s=None, running_left_s=[None], workers=1, budget_left_s=50.0
    )
    assert with_budget == Eta(50.0, by_budget=True)


def test_a_target_already_reached_is_an_eta_of_zero() -> None:
    assert search_eta(n_left=0, trial_s=None, running_left_s=[], workers=1) == Eta(0.0, False)


def test_a_run_is_paced_by_its_batches_until_its_first_epoch_ends() -> None:
    pace = RunPace(epochs=6, epoch_started=0.0)
    assert pace.left_s(1.0) is None  # no batch reported yet
    pace.steps_done(2, 100, now=3.0)  # the first batches warm up: slow, and not counted
    assert pace.left_s(3.0) is None
    pace.steps_done(12, 100, now=5.0)  # then 10 batches in 2 s: 20 s an epoch
    assert pace.left_s(5.0) == pytest.approx(88 * 0.2 + 5 * 20.0)


def test_an_epoch_slower_than_the_ones_before_is_paced_by_its_batches() -> None:
    pace = RunPace(epochs=3, epoch_started=0.0)
    pace.epoch_done(10.0, now=10.0)
    pace.steps_done(10, 100, now=15.0)
    pace.steps_done(60, 100, now=40.0)  # half a second a batch now: 40 batches are 20 s more
    assert pace.left_s(40.0) == pytest.approx(20.0 + 10.0)


def test_a_run_is_paced_by_its_finished_epochs() -> None:
    pace = RunPace(epochs=6, epoch_started=0.0)
    pace.epoch_done(20.0, now=20.0)
    pace.epoch_done(10.0, now=30.0)  # mean 15 s an epoch
    assert pace.left_s(35.0) == pytest.approx(10.0 + 3 * 15.0)
    assert pace.left_s(80.0) == pytest.approx(0.0 + 3 * 15.0)  # a slow epoch: not below 0
    for now in (45.0, 60.0, 75.0, 90.0):
        pace.epoch_done(15.0, now)
    assert pace.left_s(91.0) == 0.0


def test_a_restarted_run_does_not_count_its_setup_as_epoch_time() -> None:
    pace = RunPace(epochs=4, epoch_started=0.0)
    pace.epoch_done(10.0, now=10.0)
    pace.epoch_done(10.0, now=20.0)  # the first seed's run ends; the next builds its model
    pace.restart(now=50.0)
    assert pace.left_s(52.0) == pytest.approx(8.0 + 10.0)
