"""The final step's cost for a study as it stands, for the time budget's search deadline
(search/budget.py): what the members an ensemble selection would choose now take to retrain,
plus the export's parts.

Members are chosen as the final step will choose them (final/selection.py, on the validation
probabilities the trials kept), so a study whose ensemble would be its best trial alone does not
hold back time for retraining two more. A picklable callable: the search workers of `--jobs`
plan exactly as the main one does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import optuna
from optuna.trial import FrozenTrial

from automl_clf.final.selection import Candidate, select_ensemble
from automl_clf.final.tta import n_tta_views
from automl_clf.search.budget import DataSizes, FinalEstimate, TrialTiming, plan_final_estimate
from automl_clf.search.record import StudyRecord, TrialRecord
from automl_clf.search.study import ranked_trials
from automl_clf.spec.models import FinalSpec
from automl_clf.train.weights import load_probabilities

FASTEST_RETRAIN = 0.4  # a retrain's epoch is planned at no less than this share of its trial's
# CPU contention (machine.py) from which more threads are not counted on for a retrain: beside
# busy programs the thread governor often settles on 1 thread (train/threads.py), and a retrain
# planned at the threads' gain the probe saw could not finish (photos at 600 s beside 2 busy
# loops: planned at 0.55 of its trial's pace, on course for 0.75, given up after a tenth)
BUSY_CONTENTION = 1.25


@dataclass(frozen=True)
class FinalPlanner:
    """The final step's cost for a study (module docstring).

    `val_labels`: the validation split's labels, in its order (what the selection scores on);
    `budget_s`: the whole budget, which bounds the optional export parts planned;
    `first_epoch_s`: one epoch of the study's first trial as the budget's probe timed it
    alone, on a trial's share of the threads and on all of them (as the final step trains),
    for `retrain_pace`; None: a study that did not start in this run."""

    final: FinalSpec
    sizes: DataSizes
    val_labels: tuple[int, ...]
    n_classes: int
    objective: str
    direction: str
    budget_s: float | None = None
    first_epoch_s: tuple[float, float] | None = None
    contention: float = 1.0  # CPU contention as the job planned (machine.py)

    def __call__(self, study: optuna.Study) -> FinalEstimate:
        members = self.members(ranked_trials(study)[: self.final.ensemble])
        pace = self.retrain_pace(study)
        timings = [
            replace(t, seconds_per_epoch=t.seconds_per_epoch * pace)
            for t in (TrialTiming.of(TrialRecord.of(m)) for m in members)
            if t
        ]
        return plan_final_estimate(
            timings,
            self.sizes,
            train_on=self.final.train_on,
            retrain=self.final.retrain,
            members=max(len(members), 1),
            costs=StudyRecord.of(study).final_costs,
            tta_views=n_tta_views(self.final.tta) if self.final.tta else 0,
            budget_s=self.budget_s,
        )

    def retrain_pace(self, study: optuna.Study) -> float:
        """A retrain's epoch as a share of its trial's: the final step trains alone on all
        the threads, while each trial ran on its share beside the search's other workers
        (final steps planned at 1.4-2 times what they took: photos on a quiet machine, 22 s
        planned, 12 s taken; digits beside 4 busy loops, 19 s and 9.5 s).

        Two ratios, each at most 1: the probe's epoch on all the threads against one on a
        trial's share (what more threads buy: the probe's own bias cancels), and the probe's
        epoch on a trial's share against trial 0's as it ran (the same configuration: what
        the other workers cost it). At least `FASTEST_RETRAIN`; 1.0 when trial 0 has not
        measured itself. On a busy machine (`BUSY_CONTENTION`) the company's ratio alone."""
        if self.first_epoch_s is None:
            return 1.0
        share_s, alone_s = self.first_epoch_s
        first = study.get_trials(deepcopy=False)[:1]
        timing = TrialTiming.of(TrialRecord.of(first[0])) if first else None
        if timing is None or first[0].number != 0 or share_s <= 0:
            return 1.0
        threads = min(1.0, alone_s / share_s) if self.contention < BUSY_CONTENTION else 1.0
        company = min(1.0, share_s / timing.seconds_per_epoch)
        return max(FASTEST_RETRAIN, threads * company)

    def members(self, pool: list[FrozenTrial]) -> list[FrozenTrial]:
        """The trials of `pool` (best first) the ensemble selection would keep now; the whole
        pool when some trial's probabilities are not at hand (then the plan errs long)."""
        if len(pool) < 2 or self.final.ensemble_weights == "equal":
            return pool
        labels = np.asarray(self.val_labels)
        shape = (len(labels), self.n_classes)
        candidates = []
        for trial in pool:
            record = TrialRecord.of(trial)
            probabilities = load_probabilities(record.val_probabilities, shape)
            if probabilities is None:
                return pool
            size = record.n_params * 4 / 1e6 if record.n_params is not None else None
            candidates.append(Candidate(trial.number, probabilities, record.latency_ms, size))
        selection = select_ensemble(
            candidates,
            labels,
            objective=self.objective,
            direction=self.direction,
            max_latency_ms=self.final.max_latency_ms,
            max_size_mb=self.final.max_size_mb,
        )
        return [pool[i] for i in selection.chosen]
