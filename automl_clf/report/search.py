"""What the search did, read back from the Optuna study: trials by state, the optimisation
history, parameter importances, the best and runner-up configurations, time spent, what
pruning saved and what the time budget cut.

States are search/record.py's `trial_state`: a trial the time budget cut after an epoch is
"cut at the deadline", not pruned (it keeps its best epoch and can be the final model), so
what pruning saved counts the pruner's stops only.

Everything comes from what each trial stored (see search/objective.py), so a report can be made
from any study, finished or not, on any machine that can open its storage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl_clf.search.record import (
    CUT_AT_DEADLINE,
    STATES,
    USABLE_STATES,
    StudyRecord,
    TrialRecord,
    count_states,
    trial_state,
)
from automl_clf.search.study import trial_values

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
    state: str  # trial_state: "complete", "cut_at_deadline", "pruned", "fail", …
    # the (first) objective: a trial the deadline cut, its best epoch's; a pruned trial, the
    # last value it reported
    value: float | None
    params: dict[str, Any]
    seconds: float  # wall-clock duration (0 while running)
    epochs_run: int | None
    max_epochs: int | None  # the trial's train.epochs
    record: TrialRecord  # val metrics, n_params, latency_ms, fail_reason, …

    @property
    def state_name(self) -> str:
        """The state for people: `complete`, `cut at the deadline`, `pruned`, `failed`, …"""
        return STATES[self.state]

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialRow:
        values = trial_values(trial)
        value = values[0] if values else None  # the first objective of several
        if value is None and trial.intermediate_values:
            value = trial.intermediate_values[max(trial.intermediate_values)]
        record = TrialRecord.of(trial)
        config = record.config or {}
        return cls(
            number=trial.number,
            state=trial_state(trial),
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
    counts: dict[str, int]  # trials per state held (trial_state), in STATES order
    trials: list[TrialRow]  # in trial-number order
    ranked: list[TrialRow]  # usable trials (complete or cut at the deadline), best first
    n_complete: int  # trials Optuna holds as COMPLETE: what the importances are computed on
    seconds_by_state: dict[str, float]
    wall_seconds: float  # first trial's start to the last one's end
    importances: dict[str, float] = field(default_factory=dict)  # param -> share, summing to 1
    importance_note: str = ""  # why there are none, when there are none
    pruned_epochs_run: int = 0  # trials the pruner stopped (never those the deadline cut)
    pruned_epochs_saved: int = 0  # epochs the pruned trials did not run (at most)
    pruned_seconds_saved: float = 0.0  # those epochs at each pruned trial's own pace
    cut_epochs_run: int = 0  # epochs the trials the time budget cut ran, in all

    @property
    def best(self) -> TrialRow | None:
        return self.ranked[0] if self.ranked else None


def summarise_search(study: optuna.Study) -> SearchSummary:
    """Read `study` into a `SearchSummary`; see the module docstring."""
    frozen = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    rows = [TrialRow.of(t) for t in frozen]
    direction = study.directions[0].name.lower()  # a multi-objective study: the first
    usable = [
        r
        for r in rows
        if r.state in USABLE_STATES and r.value is not None and math.isfinite(r.value)
    ]
    sign = 1.0 if direction == "minimize" else -1.0
    ranked = sorted(usable, key=lambda r: (sign * (r.value or 0.0), r.number))
    counts = count_states(frozen)
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
        n_complete=sum(t.state == TrialState.COMPLETE for t in frozen),
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
    """What the pruner saved (its stops only), and the epochs the deadline's cuts ran."""
    for row in summary.trials:
        if row.state == CUT_AT_DEADLINE:
            summary.cut_epochs_run += row.epochs_run or 0
        if row.state != "pruned" or not row.epochs_run or not row.max_epochs:
            continue
        saved = max(0, row.max_epochs - row.epochs_run)
        pace = (row.record.train_seconds or 0.0) / row.epochs_run
        summary.pruned_epochs_run += row.epochs_run
        summary.pruned_epochs_saved += saved
        summary.pruned_seconds_saved += saved * pace


def _add_importances(summary: SearchSummary, study: optuna.Study) -> None:
    """fANOVA importances of the params every complete trial shares (seeded: reproducible),
    from MIN_IMPORTANCE_TRIALS complete trials on; below, the note says why there are none."""
    n = summary.n_complete
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
