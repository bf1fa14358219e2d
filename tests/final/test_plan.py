"""The final step's cost as the search reserves it (final/plan.py): the members a selection
would choose, and a retrain's pace against its trial's, measured from trial 0 and the probe."""

from __future__ import annotations

from dataclasses import replace

import optuna
import pytest

from automl_clf.final.plan import BUSY_CONTENTION, FASTEST_RETRAIN, FinalPlanner
from automl_clf.search.budget import DataSizes
from automl_clf.spec.final import FinalSpec

SIZES = DataSizes(n_train=100, n_val=25, n_test=25)


def study_with_first_trial(seconds_per_epoch: float, epochs: int = 4) -> optuna.Study:
    """A real in-memory study whose trial 0 measured `seconds_per_epoch` beside the other
    workers, as the search records it."""
    study = optuna.create_study()
    attrs = {"train_seconds": seconds_per_epoch * epochs, "epochs_run": epochs, "best_epoch": 4}
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs=attrs))
    return study


def planner(first_epoch_s: tuple[float, float] | None) -> FinalPlanner:
    final = FinalSpec(ensemble=1, train_on="train", retrain="auto")
    return FinalPlanner(final, SIZES, (0,) * 25, 2, "val_loss", "minimize", None, first_epoch_s)


@pytest.mark.parametrize(
    ("probed", "pace"),
    [
        ((1.0, 1.0), 0.5),  # the other worker doubled trial 0's epoch; no more threads
        ((2.0, 1.5), 0.75),  # no company cost (the probe is slow), more threads help
        ((1.5, 1.0), 0.5),  # both
        ((3.0, 4.0), 1.0),  # neither: never slower than the trial
        ((0.4, 0.2), FASTEST_RETRAIN),  # never faster than FASTEST_RETRAIN of it
        (None, 1.0),  # a study that did not start in this run
    ],
)
def test_a_retrain_is_planned_at_the_pace_the_probes_and_trial_0_measured(
    probed: tuple[float, float] | None, pace: float
) -> None:
    """Trial 0 took 2 s an epoch beside another worker; the probe timed its configuration
    alone on a trial's share of the threads and on all of them. What more threads buy and
    what the company cost are each at most 1: a biased probe cannot make a retrain slower
    than its trial."""
    study = study_with_first_trial(2.0)
    plan = planner(probed)
    assert plan.retrain_pace(study) == pytest.approx(pace)
    estimate = plan(study)
    assert estimate.retrain_each_s == pytest.approx((4 * 2.0 * pace,))  # 4 best epochs


def test_on_a_busy_machine_a_retrain_counts_on_no_more_threads() -> None:
    """Beside busy programs the governor often keeps 1 thread: what the probe saw more
    threads buy is not counted on, only what the other workers cost trial 0."""
    study = study_with_first_trial(2.0)
    busy = replace(planner((1.5, 1.0)), contention=BUSY_CONTENTION)
    assert busy.retrain_pace(study) == pytest.approx(0.75)  # 1.5 / 2.0: the company alone
    assert planner((1.5, 1.0)).retrain_pace(study) == pytest.approx(1.0 / 1.5 * 0.75)


def test_without_a_measured_first_trial_the_pace_is_the_trial_s() -> None:
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(value=0.5))  # trained nothing it recorded
    assert planner((1.0, 1.0)).retrain_pace(study) == 1.0
    assert planner((1.0, 1.0)).retrain_pace(optuna.create_study()) == 1.0
