"""A study as plain JSON-ready data: what `autoclf status --format json` and `autoclf best
--format json` print, for scripts and CI (as Optuna's own CLI offers `--format json`).

The tables of cli/tables.py show the same facts to people; these dicts are their contract with
programs: keys are stable, times are ISO 8601, durations in seconds, and a value that is not a
finite number (a diverged loss) is null, since JSON has no NaN. A trial's `state` is
search/record.py's `trial_state` (`complete`, `cut_at_deadline`, `pruned`, `fail`, `running`,
`waiting`), the keys the counts use; `optuna_state` is what Optuna holds (PRUNED for a trial
the time budget cut after an epoch, COMPLETE in a multi-objective study).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl_clf.search.record import (
    TrialRecord,
    count_states,
    n_usable,
    trial_state,
)
from automl_clf.search.study import (
    best_trial,
    fail_reason,
    pareto_front,
    ranked_trials,
    trial_values,
)

METRIC_FIELDS = (  # TrialRecord fields a trial summary lists under "metrics", when measured
    "val_loss",
    "val_accuracy",
    "val_balanced_accuracy",
    "val_macro_f1",
    "best_epoch",
    "epochs_run",
    "train_seconds",
    "n_params",
    "latency_ms",
)


def trial_summary(trial: FrozenTrial, objectives: tuple[str, ...]) -> dict[str, Any]:
    """One trial: number, state (and Optuna's), objective values by name (a trial the
    deadline cut: its best epoch's; a pruned one: its last reported), params, its best epoch's
    metrics, who ran it and when; why it failed, or how far a running one got."""
    record = TrialRecord.of(trial)
    metrics = {name: getattr(record, name) for name in METRIC_FIELDS}
    summary: dict[str, Any] = {
        "number": trial.number,
        "state": trial_state(trial),
        "optuna_state": trial.state.name,
        "values": _named(trial_values(trial), objectives),
        "params": dict(trial.params),
        "metrics": {name: value for name, value in metrics.items() if value is not None},
        "worker": record.worker,
        "datetime_start": _iso(trial.datetime_start),
        "datetime_complete": _iso(trial.datetime_complete),
        "duration_s": trial.duration.total_seconds() if trial.duration is not None else None,
    }
    if record.stopped_by is not None:
        summary["stopped_by"] = record.stopped_by
    if trial.state == TrialState.FAIL:
        summary["fail_reason"] = fail_reason(trial)
        summary["retried_first"] = record.retried_first
    if trial.state == TrialState.RUNNING:
        summary["epochs_reported"] = len(trial.intermediate_values)
    return _json_safe(summary)


def best_summary(study: optuna.Study, objectives: tuple[str, ...]) -> dict[str, Any]:
    """`autoclf best --format json`: the study, its counts, and its best trial (what `best
    --export` would retrain) or, with several objectives, its Pareto front.

    Raises:
        StudyError: a single-objective study without a complete (feasible) trial yet.
    """
    summary = _study_head(study, objectives)
    if len(study.directions) > 1:
        summary["pareto_front"] = [trial_summary(t, objectives) for t in pareto_front(study)]
    else:
        summary["best_trial"] = trial_summary(best_trial(study), objectives)
    return summary


def status_summary(study: optuna.Study, objectives: tuple[str, ...]) -> dict[str, Any]:
    """`autoclf status --format json`: counts by state and per worker, the running and failed
    trials, and the best trial so far (null when there is none) or the Pareto front."""
    trials = study.get_trials(deepcopy=False)
    summary = _study_head(study, objectives)
    summary["workers"] = worker_summaries(trials)
    summary["running"] = [
        trial_summary(t, objectives) for t in trials if t.state == TrialState.RUNNING
    ]
    summary["failed"] = [
        trial_summary(t, objectives) for t in trials if t.state == TrialState.FAIL
    ]
    if len(study.directions) > 1:
        summary["pareto_front"] = [trial_summary(t, objectives) for t in pareto_front(study)]
    else:
        ranked = ranked_trials(study)
        summary["best_trial"] = trial_summary(ranked[0], objectives) if ranked else None
    return summary


def worker_summaries(trials: list[FrozenTrial]) -> list[dict[str, Any]]:
    """Per worker (host:pid, "?" when a trial never said), sorted: its trials by state and
    when it last started one. Waiting trials belong to no worker yet."""
    workers: dict[str, list[FrozenTrial]] = {}
    for trial in trials:
        if trial.state != TrialState.WAITING:
            worker = TrialRecord.of(trial).worker
            workers.setdefault("?" if worker is None else worker, []).append(trial)
    summaries = []
    for worker, own in sorted(workers.items()):
        starts = [t.datetime_start for t in own if t.datetime_start is not None]
        counts = count_states(own)
        del counts["waiting"]
        last = _iso(max(starts)) if starts else None
        summaries.append({"worker": worker, "trials": counts, "last_started": last})
    return summaries


def _study_head(study: optuna.Study, objectives: tuple[str, ...]) -> dict[str, Any]:
    """The study, its trials by state, and how many are usable results (complete or cut at
    the deadline: what the final model can be made of)."""
    counts = count_states(study.get_trials(deepcopy=False))
    return {
        "study": study.study_name,
        "objectives": list(objectives),
        "directions": [d.name.lower() for d in study.directions],
        "trials": counts,
        "usable": n_usable(counts),
    }


def _named(values: list[float] | None, objectives: tuple[str, ...]) -> dict[str, float] | None:
    """A trial's values by objective name; by position (`objective_0`, …) should the spec name
    a different number of objectives than the study holds."""
    if values is None:
        return None
    names = objectives if len(objectives) == len(values) else ()
    return {names[i] if names else f"objective_{i}": v for i, v in enumerate(values)}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _json_safe(value: Any) -> Any:
    """`value` with every non-finite float (NaN, ±inf) as None, which JSON can carry."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value
