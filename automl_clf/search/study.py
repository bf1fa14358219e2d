"""Create, resume and read studies, refusing to mix incompatible runs in one study.

A study records the data it was made with (class names and the split's fingerprint), its
objectives and its search space; resuming with other data, other objectives or another space is
refused with a message that says what changed and how to go on, so trial values are always
comparable. The study is created once, under the study lock: the worker that creates it also
queues its first trials (the spec's defaults, the warm-start list, or every grid point), so
workers that start together neither race on the schema nor queue anything twice.

Creation ends by giving the study a random id (system attribute `autoclf_uid`): what ties a
trial's checkpoint to this study and not to an earlier one of the same name (Optuna's study and
trial numbers restart in a new database). A study without one was made by an older autoclf or by
a worker stopped midway through creating it; the next worker finishes the job (queueing what is
not queued yet) under the lock.
"""

from __future__ import annotations

import hashlib
import math
import random
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from automl_clf.data.dataset import Dataset
from automl_clf.errors import StudyError
from automl_clf.search.record import (
    USABLE,
    USABLE_STATES,
    StudyRecord,
    TrialRecord,
    count_states,
    counts_text,
    trial_state,
)
from automl_clf.search.samplers import build_pruner, build_sampler
from automl_clf.search.storage import StudyLock, open_storage, storage_faults, storage_file
from automl_clf.spec.describe import describe_space, grid_points
from automl_clf.spec.models import ResolvedSpec, Spec
from automl_clf.spec.warmstart import default_params, warm_start_params

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
UID_ATTR = "autoclf_uid"  # study system attribute: this study instance's random id


@dataclass
class OpenedStudy:
    study: optuna.Study
    storage: BaseStorage
    study_id: int  # the study's id in `storage` (what storage methods take)
    lock: StudyLock
    created: bool  # this call created the study (and queued its first trials)
    uid: str  # the study instance's random id (see the module docstring)
    space_changed: bool  # the stored space differed and --force resumed anyway
    n_grid_points: int | None  # a grid study's size, else None


def open_study(spec: ResolvedSpec, dataset: Dataset, *, force: bool = False) -> OpenedStudy:
    """Create the spec's study, or resume it after checking it is the same experiment.

    Raises:
        StudyError: the storage cannot be opened, or the stored study has other directions,
            data, or (without `force`) another search space.
    """
    name, url = spec.study.name, spec.study.storage
    lock = StudyLock(url, name)
    points = _grid_order(spec) if spec.study.sampler.enumerates_space else None
    with lock.held():
        storage = open_storage(
            url,
            heartbeat_interval=spec.study.heartbeat_interval,
            grace_period=spec.study.grace_period,
        )
        sampler, pruner = build_sampler(spec), build_pruner(spec)
        created = True
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=name,
                directions=spec.study.directions,
                sampler=sampler,
                pruner=pruner,
            )
        except optuna.exceptions.DuplicatedStudyError:
            created = False
            study = optuna.load_study(
                study_name=name, storage=storage, sampler=sampler, pruner=pruner
            )
        _check_directions(study, spec)
        check_compatible(study, spec, dataset)
        name_metrics(study, spec.study.objectives)
        space_changed = _check_space(study, spec, force=force)
        study_id = storage.get_study_id_from_name(name)
        uid = storage.get_study_system_attrs(study_id).get(UID_ATTR)
        if uid is None:  # a new study, or one whose creation did not finish
            _queue_first_trials(study, spec, points, skip_queued=not created)
            uid = uuid.uuid4().hex
            storage.set_study_system_attr(study_id, UID_ATTR, uid)
    n_points = len(points) if points is not None else None
    return OpenedStudy(study, storage, study_id, lock, created, str(uid), space_changed, n_points)


def name_metrics(study: optuna.Study, objectives: Sequence[str]) -> None:
    """Name the study's values after the spec's objectives (`val_loss`; `accuracy`,
    `latency_ms`), so optuna-dashboard's plots and tables say them instead of "Objective 0".

    Set once (a study made before autoclf named them gets them on its next search); the names
    cannot go stale, as `check_compatible` refuses other objectives. `set_metric_names` is
    marked experimental; its warning says nothing the user can act on.
    """
    names = list(objectives)
    if study.metric_names == names:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)


def _fix(name: str | None) -> str:
    return f"start a new study with --study-name (or study.name in the spec) instead of {name!r}"


def _check_directions(study: optuna.Study, spec: Spec) -> None:
    stored = [d.name.lower() for d in study.directions]
    if stored != spec.study.directions:
        raise StudyError(
            f"study {spec.study.name!r} optimises {len(stored)} objective(s) "
            f"({', '.join(stored)}), but objective {spec.study.objective!r} means "
            f"{', '.join(spec.study.directions)}; Optuna cannot change a study's directions, so "
            f"{_fix(spec.study.name)}"
        )


def check_compatible(study: optuna.Study, spec: Spec, dataset: Dataset) -> None:
    """Record the study's data on first use; afterwards refuse other data or another objective."""
    stored = StudyRecord.of(study)
    name = spec.study.name
    objective: Any = spec.study.objective  # a name, or a list of names (a Literal's list)
    if stored.split_fingerprint is None:
        StudyRecord(
            objective=objective,
            classes=dataset.classes,
            split_fingerprint=dataset.fingerprint,
            data_root=str(dataset.root),
        ).save(study)
        return
    dataset.keep_split(stored.split_fingerprint)  # made before near-duplicates were grouped
    if stored.objective != objective:
        raise StudyError(
            f"study {name!r} optimises {stored.objective!r}, the spec asks for "
            f"{objective!r}; {_fix(name)}"
        )
    if stored.classes != dataset.classes or stored.split_fingerprint != dataset.fingerprint:
        raise StudyError(
            f"the data under {dataset.root} differs from the data study {name!r} was made with "
            f"(classes {stored.classes}, split {stored.split_fingerprint}; now "
            f"{dataset.classes}, split {dataset.fingerprint}); trial results would not be "
            f"comparable, so {_fix(name)}"
        )


def space_lines(spec: Spec) -> list[str]:
    """The search space as text, one line per param: what a study stores to detect changes."""
    lines = []
    for p in describe_space(spec).params:
        when = f" when {p.condition}" if p.condition else ""
        lines.append(f"{p.name} {p.kind} {p.detail}{when}")
    return lines


def _space_hash(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def _check_space(study: optuna.Study, spec: Spec, *, force: bool) -> bool:
    """Record the space on first use; afterwards refuse a changed space unless `force`.

    Returns whether the space changed (and `force` let the study resume).
    """
    lines = space_lines(spec)
    digest = _space_hash(lines)
    record = StudyRecord.of(study)
    stored = record.space_hash
    if stored == digest:
        return False
    if stored is not None and not force:
        old = record.space or []
        removed = [f"  - {line}" for line in old if line not in lines]
        added = [f"  + {line}" for line in lines if line not in old]
        raise StudyError(
            f"the search space of study {spec.study.name!r} changed since it was created:\n"
            + "\n".join(removed + added)
            + "\nsamplers would mix results from two spaces. Rerun with --force to resume it "
            f"anyway (the new space applies to new trials), or {_fix(spec.study.name)}"
        )
    StudyRecord(space=lines, space_hash=digest).save(study)
    return stored is not None


def _grid_order(spec: Spec) -> list[dict[str, Any]]:
    """Every grid point, warm-start matches first, the rest in a seeded random order."""
    points = grid_points(spec)
    random.Random(spec.study.seed).shuffle(points)
    wanted = warm_start_params(spec)

    def rank(point: dict[str, Any]) -> int:
        for i, entry in enumerate(wanted):
            if all(point.get(k) == v for k, v in entry.items()):
                return i
        return len(wanted)

    return sorted(points, key=rank)  # stable: the shuffled order within each rank


def _queue_first_trials(
    study: optuna.Study,
    spec: Spec,
    points: list[dict[str, Any]] | None,
    *,
    skip_queued: bool = False,
) -> None:
    """Queue what the new study tries before its sampler (see the module docstring);
    `skip_queued`: except what the study already holds (finishing an interrupted creation)."""
    if points is not None:
        queue = points
    else:
        defaults = [default_params(spec)] if spec.study.try_defaults else []
        queue = defaults + warm_start_params(spec)
    for params in queue:
        study.enqueue_trial(params, skip_if_exists=skip_queued)


def load_existing_study(storage_url: str, name: str) -> optuna.Study:
    """An existing study, or a StudyError that lists the studies the storage holds (a
    StorageError when the storage is damaged or unreadable).

    A SQLite or journal file that does not exist holds no study: it is refused before opening,
    which would create it (and its folder), leaving an empty database behind `best` or
    `status` run before any `search`.
    """
    file = storage_file(storage_url)
    if file is not None and not file.exists():
        raise StudyError(
            f"no study named {name!r}: {file} does not exist yet; run `autoclf search SPEC` "
            "first (or give --storage / study.storage where the study is)"
        )
    storage = open_storage(storage_url)
    try:
        with storage_faults(storage_url):
            return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        with storage_faults(storage_url):
            names = optuna.study.get_all_study_names(storage=storage)
        listing = ", ".join(sorted(names)) if names else "none"
        raise StudyError(
            f"no study named {name!r} in {storage_url}; run `autoclf search SPEC` first "
            f"(studies there: {listing})"
        ) from None


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=FINISHED)


def _no_usable_trial(study: optuna.Study, what: str) -> StudyError:
    held = counts_text(count_states(study.get_trials(deepcopy=False)))
    return StudyError(
        f"study {study.study_name!r} has no {what} yet ({held}); run `autoclf search SPEC` to "
        "finish some"
    )


def best_trial(study: optuna.Study) -> FrozenTrial:
    """The best feasible trial (`ranked_trials`), or a StudyError saying there is none (or that
    a multi-objective study has a Pareto front instead)."""
    if len(study.directions) > 1:
        front = ", ".join(f"#{t.number}" for t in pareto_front(study)) or "empty so far"
        raise StudyError(
            f"study {study.study_name!r} has several objectives, so no single best trial; pick "
            f"one from its Pareto front ({front}) with --trial N"
        )
    ranked = ranked_trials(study)
    if ranked:
        return ranked[0]
    if not any(trial_state(t) in USABLE_STATES for t in study.get_trials(deepcopy=False)):
        raise _no_usable_trial(study, f"usable trial ({USABLE})")
    raise _no_usable_trial(study, f"usable trial ({USABLE}) within study.constraints")


def trial_value(trial: FrozenTrial) -> float:
    """A single-objective trial's value: Optuna's for a complete trial, the best epoch's for
    one a time budget cut (which Optuna holds as PRUNED, at its last epoch's value); NaN for a
    pruned trial that has none."""
    if trial.state == TrialState.COMPLETE:
        return float(trial.values[0])
    value = TrialRecord.of(trial).objective_value
    return float(value) if value is not None else math.nan


def trial_values(trial: FrozenTrial) -> list[float] | None:
    """A trial's objective values as autoclf ranks them: Optuna's, but for a trial a time
    budget cut (PRUNED, one objective) its best epoch's (`objective_value`), not the last
    epoch's that Optuna holds for it. A pruned trial's are its last reported value."""
    record = TrialRecord.of(trial)
    if trial.state == TrialState.PRUNED and record.stopped_by_deadline:
        return None if record.objective_value is None else [record.objective_value]
    return trial.values


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """A single-objective study's candidates for the final model, best first: its COMPLETE
    trials and those a time budget cut after an epoch (user attribute `stopped_by: deadline`,
    see search/objective.py), within the constraints, with a finite value."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    records = [(t, TrialRecord.of(t)) for t in trials]
    candidates = [
        t
        for t, record in records
        if trial_state(t) in USABLE_STATES and record.feasible and math.isfinite(trial_value(t))
    ]
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return sorted(candidates, key=lambda t: (sign * trial_value(t), t.number))


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    """The complete, feasible trials no other trial beats on every objective, by number."""
    return sorted(study.best_trials, key=lambda t: t.number)


def fail_reason(trial: FrozenTrial) -> str:
    """Why a FAIL trial failed; a trial failed by the heartbeat never got to say."""
    reason = TrialRecord.of(trial).fail_reason
    if reason:
        return reason
    return "worker lost: no heartbeat within the grace period (kill -9, a lost machine)"
