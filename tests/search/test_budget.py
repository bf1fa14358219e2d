"""The total time budget's arithmetic, on an injected clock: the split between search
and final step, re-planning as trials measure themselves, and the retrain decision."""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest

from automl_clf.errors import SpecError
from automl_clf.search.budget import (
    FINAL_PRIORS,
    MARGIN,
    REPLAN_EVERY_S,
    SLACK_S,
    Budget,
    DataSizes,
    FinalEstimate,
    TrialTiming,
    check_budget_covers_one_epoch,
    estimate_export_s,
    estimate_retrain_s,
    members_to_retrain,
    plan_final_estimate,
)
from automl_clf.search.record import TrialRecord


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


SIZES = DataSizes(n_train=1000, n_val=250, n_test=250)


def test_the_retrain_scales_the_trials_epoch_time_to_train_plus_val() -> None:
    timing = TrialTiming(seconds_per_epoch=2.0, best_epoch=6)
    assert estimate_retrain_s(timing, SIZES, train_on="train") == pytest.approx(12.0)
    assert estimate_retrain_s(timing, SIZES, train_on="train+val") == pytest.approx(15.0)
    assert estimate_retrain_s(timing, SIZES, train_on="train", members=3) == pytest.approx(36.0)


def test_timing_is_read_from_a_trials_attributes_or_none() -> None:
    def timing(attrs: dict[str, float]) -> TrialTiming | None:
        return TrialTiming.of(TrialRecord.from_attrs(attrs))

    assert timing({"train_seconds": 12.0, "epochs_run": 4, "best_epoch": 3}) == TrialTiming(3.0, 3)
    assert timing({"train_seconds": 1.0}) is None
    assert timing({"train_seconds": 1.0, "epochs_run": 0}) is None


def test_the_search_deadline_moves_as_the_final_step_is_measured() -> None:
    clock = FakeClock()
    budget = Budget.start(100.0, clock)
    assert budget.search_deadline == budget.deadline == 1100.0  # nothing to reserve yet

    first = plan_final_estimate([], SIZES, train_on="train+val", retrain="auto")
    assert first.retrain_s == 0 and first.export_s > 0  # before any trial: the export only
    budget.reserve(first)
    assert budget.search_deadline == pytest.approx(1100.0 - first.with_margin())

    clock.now += 30
    timings = [TrialTiming(2.0, 6), TrialTiming(9.0, 9)]  # best first
    costs = {"test": 1.0, "write": 2.0, "latency": 0.5, "figures": 1.0, "torchscript": 0.5}
    plan = plan_final_estimate(
        timings,
        SIZES,
        train_on="train+val",
        retrain="auto",
        costs={**costs, "onnx": 0.0, "heatmaps": 0.0},
    )
    assert plan == FinalEstimate(retrain_each_s=(15.0,), export_s=5.0, required_s=3.5)
    budget.reserve(plan)
    reserve = 20.0 * (1 + MARGIN) + SLACK_S
    assert budget.search_deadline == pytest.approx(1100.0 - reserve)
    assert budget.search_left_s() == pytest.approx(70.0 - reserve)
    assert budget.fits(70.0 - reserve - 0.1) and not budget.fits(70.0 - reserve + 0.1)


def test_the_export_plans_its_optional_parts_within_a_share_of_the_budget() -> None:
    costs = {"test": 1.0, "write": 1.0, "latency": 1.0, "figures": 2.0, "heatmaps": 1.0}
    costs |= {"torchscript": 2.0, "tta": 1.0, "onnx": 6.0}
    assert estimate_export_s(costs) == 3.0 + 3.0 + 2.0 + 0.0 + 6.0  # no budget: all (no tta)
    assert estimate_export_s(costs, tta_views=2) == 3.0 + 3.0 + 2.0 + 2.0 + 6.0
    # 10 % of 60 s: the figures, heatmaps and TorchScript fit, ONNX (5 + 6 > 6) does not
    assert estimate_export_s(costs, budget_s=60.0) == 3.0 + 3.0 + 2.0
    # 10 % of 40 s: the figures and heatmaps fit, TorchScript (3 + 2 > 4) does not, nor
    # anything after it
    assert estimate_export_s(costs, budget_s=40.0, tta_views=1) == 3.0 + 3.0
    # 10 % of 25 s: the figures fit, the heatmaps (2 + 1 > 2.5) do not
    assert estimate_export_s(costs, budget_s=25.0) == 3.0 + 2.0
    assert estimate_export_s(costs, budget_s=10.0) == 3.0  # the required parts, always
    # before a study measured its test, the prior counts once per member
    assert estimate_export_s({}, members=3) - estimate_export_s({}) == pytest.approx(
        2 * FINAL_PRIORS["test"]
    )


def test_an_ensemble_reserves_a_retrain_per_member_and_never_reserves_none() -> None:
    timings = [TrialTiming(2.0, 6), TrialTiming(1.0, 4), TrialTiming(5.0, 5)]
    two = plan_final_estimate(timings, SIZES, train_on="train", retrain="auto", members=2)
    assert two.retrain_each_s == pytest.approx((12.0, 4.0))
    never = plan_final_estimate(timings, SIZES, train_on="train", retrain="never", members=2)
    assert never.retrain_s == 0 and never.export_s > 0


def test_auto_retrains_as_many_members_as_still_fit() -> None:
    clock = FakeClock()
    budget = Budget.start(60.0, clock)
    estimate = FinalEstimate(retrain_each_s=(20.0, 10.0), export_s=5.0)
    assert members_to_retrain("auto", estimate, budget, 2) == 2
    clock.now += 60.0 - estimate.with_margin() + 0.5  # half a second short of both
    assert members_to_retrain("auto", estimate, budget, 2) == 1  # the best one still fits
    clock.now += estimate.with_margin() - estimate.with_margin(0)  # short of any retrain
    assert members_to_retrain("auto", estimate, budget, 2) == 0
    assert members_to_retrain("always", estimate, budget, 2) == 2
    assert members_to_retrain("never", estimate, None, 2) == 0
    assert members_to_retrain("auto", estimate, None, 2) == 2  # no budget: retrain as before
    assert estimate.with_margin(1) < estimate.with_margin() == estimate.with_margin(2)


def test_a_retrain_that_no_longer_fits_holds_back_no_search_time() -> None:
    """A trial that became best late, with a slow retrain (photos at 600 s beside 2 busy
    loops: 2 m 44 s with 2 m 56 s left): while the retrain fits, the search stops in time for
    it; once it cannot, the search keeps the time until the export's reserve, as the final
    step will not retrain it. `always` retrains whatever the time, so its reserve stays."""
    clock = FakeClock()
    budget = Budget.start(600.0, clock)
    estimate = FinalEstimate(retrain_each_s=(164.0,), export_s=10.0, required_s=2.0)
    budget.reserve(estimate)
    assert budget.search_deadline == pytest.approx(budget.deadline - estimate.with_margin())
    clock.now = budget.deadline - estimate.with_margin() + 1.0  # past it: the retrain fits
    assert budget.passed() and members_to_retrain("auto", estimate, budget, 1) == 1
    clock.now = budget.deadline - 176.0  # 2 m 56 s left: it no longer does
    assert members_to_retrain("auto", estimate, budget, 1) == 0
    assert budget.search_deadline == pytest.approx(budget.deadline - estimate.with_margin(0))
    assert not budget.passed()
    budget.reserve(replace(estimate, retrains_optional=False))
    assert budget.passed()


def test_a_retrain_goes_before_the_export_s_optional_parts() -> None:
    """As the final step decides: a retrain that fits beside the required parts is planned,
    and the optional parts (the report's figures, ONNX) are what gives way."""
    clock = FakeClock()
    budget = Budget.start(30.0, clock)
    estimate = FinalEstimate(retrain_each_s=(20.0,), export_s=8.0, required_s=1.0)
    assert estimate.with_margin() > budget.left_s  # all of it does not fit …
    assert members_to_retrain("auto", estimate, budget, 1) == 1  # … the retrain does
    clock.now += 30.0 - (20.0 + 1.0) * (1 + MARGIN) - SLACK_S + 0.5
    assert members_to_retrain("auto", estimate, budget, 1) == 0


def test_a_following_budget_re_estimates_the_final_step_as_the_study_changes() -> None:
    """The running trials read the search deadline each step: a trial that ended elsewhere
    (a different best, another member) moves it, at most every REPLAN_EVERY_S, and a pickled
    budget (a `--jobs` helper's) does not carry the re-planner."""
    clock = FakeClock()
    budget = Budget.start(100.0, clock)
    reserves = iter([FinalEstimate((40.0,), 2.0), FinalEstimate((4.0,), 2.0)])
    budget.follow(lambda: next(reserves))
    slow = budget.search_deadline
    assert slow == pytest.approx(budget.deadline - FinalEstimate((40.0,), 2.0).with_margin())
    assert budget.search_deadline == slow  # not re-planned within REPLAN_EVERY_S
    clock.now += REPLAN_EVERY_S
    assert budget.search_deadline > slow + 30  # the slow member is no longer chosen
    assert pickle.loads(pickle.dumps(budget)).replan is None
    budget.follow(None)
    assert budget.replan is None


def test_phases_record_plan_and_actual() -> None:
    budget = Budget.start(60.0, FakeClock())
    budget.record("search", planned_s=40.0)
    budget.record("search", actual_s=41.5)
    budget.record("export", planned_s=5.0)
    assert [(p.name, p.planned_s, p.actual_s) for p in budget.phases] == [
        ("search", 40.0, 41.5),
        ("export", 5.0, None),
    ]


def test_a_budget_too_small_for_one_epoch_says_how_much_is_needed() -> None:
    check_budget_covers_one_epoch(60.0, elapsed_s=5.0, epoch_s=10.0, export_s=8.0)
    with pytest.raises(SpecError, match=r"too small.*at least --time (\d+)s") as caught:
        check_budget_covers_one_epoch(20.0, elapsed_s=5.0, epoch_s=10.0, export_s=8.0)
    needed = int(str(caught.value).rsplit("--time ", 1)[1].rstrip("s"))
    check_budget_covers_one_epoch(needed, elapsed_s=5.0, epoch_s=10.0, export_s=8.0)
