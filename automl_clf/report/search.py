"""What the search did, read back from the Optuna study: trials by state, the optimisation
history, parameter importances, the best and runner-up configurations, time spent, and what
pruning saved.

Everything comes from what each trial stored (see search/objective.py), so a report can be made
from any study, finished or not, on any machine that can open its storage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from automl_clf.search.record import StudyRecord, TrialRecord

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
# Complete trials below which parameter importances are not shown. Measured (bench/importances.py:
# random search, one parameter explaining 90 % of the objective's variance among 3, 6 or 10):
# with 5 complete trials fANOVA ranks it first in only 22-78 % of studies; with 10 in
# 80-98 %, but its share comes out at 0.40-0.83 of a true 0.9, so the others' bars look as if
# they mattered; from 20 the order (100 %) and the lengths (0.87-0.95) are right. Real searches
# are noisier than that easy case, so below 20 the report says why instead of drawing bars.
MIN_IMPORTANCE_TRIALS = 20
IMPORTANCE_METHOD = (
    "fANOVA (Optuna's FanovaImportanceEvaluator, seed 0): each parameter's share of the "
    "variance of the objective over the complete trials. optuna-dashboard's bars use PED-ANOVA, "
    "which asks which parameters set the best 10 % of trials apart, so the two rankings can "
    "differ, most of all with few trials"
)


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str
    value: float | None  # the (first) objective; the last reported value for a pruned trial
    params: dict[str, Any]
    seconds: float  # wall-clock duration (0 while running)
    epochs_run: int | None
    max_epochs: int | None  # the trial's train.epochs
    record: TrialRecord  # val metrics, n_params, latency_ms, fail_reason, …

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialRow:
        value = trial.values[0] if trial.values else None  # the first objective of several
        if value is None and trial.intermediate_values:
            value = trial.intermediate_values[max(trial.intermediate_values)]
        record = TrialRecord.of(trial)
        config = record.config or {}
        return cls(
            number=trial.number,
            state=trial.state.name,
            value=value,
            params=dict(trial.params),
            seconds=trial.duration.total_seconds() if trial.duration is not None else 0.0,
            epochs_run=record.epochs_run,
            max_epochs=config.get("train", {}).get("epochs"),
            record=record,
        )


@dataclass
class SearchSummary:
    study_name: str
    objective: str
    direction: str  # "minimize" or "maximize"
    counts: dict[str, int]  # trials per state, in STATES order
    trials: list[TrialRow]  # in trial-number order
    ranked: list[TrialRow]  # complete trials, best first
    seconds_by_state: dict[str, float]
    wall_seconds: float  # first trial's start to the last one's end
    importances: dict[str, float] = field(default_factory=dict)  # param -> share, summing to 1
    importance_note: str = ""  # why there are none, when there are none
    pruned_epochs_run: int = 0
    pruned_epochs_saved: int = 0  # epochs the pruned trials did not run (at most)
    pruned_seconds_saved: float = 0.0  # those epochs at each pruned trial's own pace

    @property
    def best(self) -> TrialRow | None:
        return self.ranked[0] if self.ranked else None


def summarise_search(study: optuna.Study) -> SearchSummary:
    """Read `study` into a `SearchSummary`; see the module docstring."""
    frozen = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    rows = [TrialRow.of(t) for t in frozen]
    direction = study.directions[0].name.lower()  # a multi-objective study: the first
    complete = [r for r in rows if r.state == "COMPLETE" and r.value is not None]
    sign = 1.0 if direction == "minimize" else -1.0
    ranked = sorted(complete, key=lambda r: sign * (r.value or 0.0))
    counts = {s: sum(1 for r in rows if r.state == s) for s in STATES}
    seconds = {s: sum(r.seconds for r in rows if r.state == s) for s in STATES}
    starts = [t.datetime_start for t in frozen if t.datetime_start is not None]
    ends = [t.datetime_complete for t in frozen if t.datetime_complete is not None]
    wall = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
    summary = SearchSummary(
        study_name=study.study_name,
        objective=_first(StudyRecord.of(study).objective or "value"),
        direction=direction,
        counts={s: n for s, n in counts.items() if n},
        trials=rows,
        ranked=ranked,
        seconds_by_state={s: v for s, v in seconds.items() if counts[s]},
        wall_seconds=wall,
    )
    _add_pruning_savings(summary)
    _add_importances(summary, study)
    return summary


def _first(objective: Any) -> str:
    """The study's (first) objective name: multi-objective studies store a list."""
    return str(objective[0] if isinstance(objective, list) else objective)


def _add_pruning_savings(summary: SearchSummary) -> None:
    for row in summary.trials:
        if row.state != "PRUNED" or not row.epochs_run or not row.max_epochs:
            continue
        saved = max(0, row.max_epochs - row.epochs_run)
        pace = (row.record.train_seconds or 0.0) / row.epochs_run
        summary.pruned_epochs_run += row.epochs_run
        summary.pruned_epochs_saved += saved
        summary.pruned_seconds_saved += saved * pace


def _add_importances(summary: SearchSummary, study: optuna.Study) -> None:
    """fANOVA importances of the params every complete trial shares (seeded: reproducible),
    from MIN_IMPORTANCE_TRIALS complete trials on; below, the note says why there are none."""
    n = len(summary.ranked)
    if n < MIN_IMPORTANCE_TRIALS:
        summary.importance_note = (
            f"not shown below {MIN_IMPORTANCE_TRIALS} complete trials (this study has {n}): "
            "with fewer, which parameter comes out on top is mostly chance; run more trials "
            "(autoclf search SPEC resumes the study)"
        )
        return
    try:
        importances = optuna.importance.get_param_importances(
            study,
            evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
            target=(lambda t: t.values[0]) if len(study.directions) > 1 else None,
        )
    except (ValueError, RuntimeError) as exc:  # e.g. no parameter shared by all trials
        summary.importance_note = f"not computed: {exc}"
        return
    summary.importances = {k: float(v) for k, v in importances.items() if math.isfinite(v)}
    if not summary.importances:
        summary.importance_note = "no parameter varies across the complete trials"
