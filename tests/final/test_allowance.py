"""The final step's time (final/allowance.py): what fits, what is skipped and named, and a
retrain deadline that gives up as soon as its pace says it cannot finish. Fake clocks only."""

from __future__ import annotations

import pytest

from automl_clf.final.allowance import Allowance, RetrainDeadline
from automl_clf.final.export import HEATMAP_IMAGES, HEATMAP_PASSES, heatmaps_estimate_s
from automl_clf.final.manifest import LatencyRecord
from automl_clf.search.budget import FINAL_PRIORS, MARGIN
from tests.search.test_limits import SteppedClock


def test_without_a_budget_everything_fits_and_nothing_is_skipped() -> None:
    allowance = Allowance.unlimited()
    assert allowance.allows("anything", 1e12, reserve_s=1e12)
    assert allowance.skipped == [] and allowance.retrain_deadline(10, reserve_s=0) is None


def test_a_part_runs_only_when_it_fits_before_the_reserve_and_is_named_when_not() -> None:
    clock = SteppedClock()
    allowance = Allowance(until=10.0, clock=clock)
    assert allowance.allows("onnx (model.onnx)", 4.0, reserve_s=5.0)  # 4.6 + 5 <= 10
    assert not allowance.allows("onnx (model.onnx)", 5.0, reserve_s=5.0)  # 5.75 + 5 > 10
    assert allowance.skipped == ["onnx (model.onnx) (about 5.0 s; 5.0 s left of the time budget)"]
    clock.now = 20.0  # past the deadline
    assert not allowance.allows("the report's figures", 0.1)
    assert "0.0 s left" in allowance.skipped[-1]


def test_estimates_come_from_this_step_then_the_study_then_the_priors() -> None:
    clock = SteppedClock()
    allowance = Allowance(until=100.0, clock=clock, costs={"onnx": 2.0})
    assert allowance.estimate("figures") == FINAL_PRIORS["figures"]
    assert allowance.estimate("onnx") == 2.0
    with allowance.timed("onnx"):
        clock.now += 0.5
    with allowance.timed("onnx"):  # a part that runs twice adds up
        clock.now += 0.25
    assert allowance.estimate("onnx") == pytest.approx(0.75)
    required = FINAL_PRIORS["test"] + FINAL_PRIORS["write"] + FINAL_PRIORS["latency"]
    assert allowance.reserve_s() == pytest.approx(required * (1 + MARGIN))


def test_without_the_margin_a_part_fits_that_would_not_with_it() -> None:
    """What the final step asks of a retrain, which gives up by itself when its pace shows it
    cannot finish: 9.5 s of work fits in 10 s without the margin, not with it."""
    allowance = Allowance(until=10.0, clock=lambda: 0.0)
    assert not allowance.fits(9.5) and allowance.fits(9.5, margin=False)
    assert allowance.allows("a retrain", 9.5, margin=False) and not allowance.skipped
    assert not allowance.allows("a retrain", 9.5) and allowance.skipped


def test_a_busy_machine_stretches_the_formats_priors_not_what_was_measured() -> None:
    """The formats' priors are an idle machine's seconds, times the contention as the step
    began; the required parts' stay as the search's reserve planned them, the figures' (which
    stop at the deadline by themselves) too, and what the study measured before, and what
    this step measures, are taken as they are."""
    clock = SteppedClock()
    allowance = Allowance(until=100.0, clock=clock, costs={"tta": 2.0}, contention=3.0)
    assert allowance.estimate("onnx") == pytest.approx(3.0 * FINAL_PRIORS["onnx"])
    assert allowance.estimate("torchscript") == pytest.approx(3.0 * FINAL_PRIORS["torchscript"])
    assert allowance.estimate("write") == pytest.approx(FINAL_PRIORS["write"])
    assert allowance.estimate("figures") == pytest.approx(FINAL_PRIORS["figures"])
    assert allowance.estimate("tta") == pytest.approx(2.0)
    with allowance.timed("onnx"):
        clock.now += 4.0
    assert allowance.estimate("onnx") == pytest.approx(4.0)


def test_a_part_timed_inside_another_counts_for_itself_only() -> None:
    clock = SteppedClock()
    allowance = Allowance(until=100.0, clock=clock)
    with allowance.timed("figures"):
        clock.now += 1.0
        with allowance.timed("heatmaps"):  # the report's heatmaps, made while it draws
            clock.now += 3.0
        clock.now += 0.5
    assert allowance.measured == {"figures": pytest.approx(1.5), "heatmaps": pytest.approx(3.0)}
    with allowance.timed("write"):  # the next part starts from nothing
        clock.now += 0.25
    assert allowance.measured["write"] == pytest.approx(0.25)


def test_heatmaps_are_estimated_from_the_model_latency_until_measured() -> None:
    latency = LatencyRecord(ms=50.0, threads=1, device="cpu", method="test")
    fresh = Allowance(until=100.0)
    per_image = HEATMAP_PASSES * 0.05
    expected = FINAL_PRIORS["heatmaps"] + HEATMAP_IMAGES * per_image
    assert heatmaps_estimate_s(fresh, latency) == pytest.approx(expected)
    measured = Allowance(until=100.0, costs={"heatmaps": 0.7})  # this study's last final step
    assert heatmaps_estimate_s(measured, latency) == 0.7


def test_a_retrain_deadline_gives_up_when_its_pace_cannot_finish_in_time() -> None:
    clock = SteppedClock()
    deadline = RetrainDeadline(until=10.0, steps=100, clock=clock)
    clock.now = 3.0  # building the model does not count towards the pace
    for _ in range(10):  # a tenth of the steps before the pace is judged
        assert not deadline.passed()
        clock.now += 0.05  # 0.05 s a step: 100 steps take 5 s, well within 7 s left
    assert not deadline.passed()
    clock.now += 1.0  # one slow step: the later half's pace is 0.2 s a step, 89 left take 19 s
    assert deadline.passed() and deadline.hopeless


def test_a_retrain_is_not_given_up_for_its_warm_up_steps() -> None:
    """The first steps are slow (allocations, the thread governor's trials): a pace taken
    from them would give up a retrain that finishes well in time. It is judged after a tenth
    of the steps, from the later half."""
    clock = SteppedClock()
    deadline = RetrainDeadline(until=10.0, steps=100, clock=clock)
    for step in range(100):
        assert not deadline.passed(), step
        clock.now += 0.4 if step < 5 else 0.05  # 2 s of warm-up, then 95 steps in 4.75 s
    assert not deadline.hopeless and clock.now < 10.0


def test_a_retrain_deadline_passes_at_its_time_whatever_the_pace() -> None:
    clock = SteppedClock()
    deadline = RetrainDeadline(until=1.0, steps=1, clock=clock)
    assert not deadline.passed() and deadline.fits(0.5) and not deadline.fits(2.0)
    clock.now = 1.5
    assert deadline.passed() and not deadline.hopeless
