"""Create, resume and read studies, refusing to mix incompatible runs in one study.

A study records the data it was made with (class names and the split's fingerprint) and its
direction; resuming with other data or another objective is refused with a message that says how
to start a new study instead, so trial values are always comparable.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl_clf.data.dataset import Dataset
from automl_clf.errors import StudyError
from automl_clf.search.storage import open_storage
from automl_clf.spec.models import Spec

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def build_sampler(spec: Spec, n_existing: int) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded with `seed + n_existing`.

    Offsetting by the trials already in the study keeps a fresh study reproducible while a
    resumed one does not replay the random start-up trials it already ran.
    """
    seed = spec.study.seed + n_existing
    if spec.study.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # multivariate + group: TPE models conditional spaces (CNN-only params) jointly.
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)


def build_pruner(spec: Spec) -> optuna.pruners.BasePruner:
    pruner = spec.study.pruner
    if pruner.kind == "none":
        return optuna.pruners.NopPruner()
    # Steps are 1-based epochs; Optuna never prunes at step < n_warmup_steps.
    return optuna.pruners.MedianPruner(
        n_startup_trials=pruner.n_startup_trials, n_warmup_steps=pruner.n_warmup_steps + 1
    )


def open_study(spec: Spec, dataset: Dataset) -> optuna.Study:
    """Create the spec's study, or resume it after checking it was made with the same data."""
    assert spec.study.name is not None and spec.study.storage is not None
    storage = open_storage(spec.study.storage)
    n_existing = _n_existing_trials(storage, spec.study.name)
    study = optuna.create_study(
        storage=storage,
        study_name=spec.study.name,
        direction=spec.study.resolved_direction,
        sampler=build_sampler(spec, n_existing),
        pruner=build_pruner(spec),
        load_if_exists=True,
    )
    check_compatible(study, spec, dataset)
    return study


def _n_existing_trials(storage: optuna.storages.BaseStorage, name: str) -> int:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))


def check_compatible(study: optuna.Study, spec: Spec, dataset: Dataset) -> None:
    """Record the study's data on first use; afterwards refuse other data or another objective."""
    stored: dict[str, Any] = study.user_attrs
    name = spec.study.name
    fix = f"start a new study with --study-name (or study.name in the spec) instead of {name!r}"
    direction = spec.study.resolved_direction
    if study.direction.name.lower() != direction:
        raise StudyError(
            f"study {name!r} {study.direction.name.lower()}s, but objective "
            f"{spec.study.objective!r} must be {direction}d; {fix}"
        )
    if "split_fingerprint" not in stored:
        study.set_user_attr("objective", spec.study.objective)
        study.set_user_attr("classes", dataset.classes)
        study.set_user_attr("split_fingerprint", dataset.fingerprint)
        study.set_user_attr("data_root", str(dataset.root))
        return
    if stored.get("objective") != spec.study.objective:
        raise StudyError(
            f"study {name!r} optimises {stored.get('objective')!r}, the spec asks for "
            f"{spec.study.objective!r}; {fix}"
        )
    if (
        stored.get("classes") != dataset.classes
        or stored["split_fingerprint"] != dataset.fingerprint
    ):
        raise StudyError(
            f"the data under {dataset.root} differs from the data study {name!r} was made with "
            f"(classes {stored.get('classes')}, split {stored['split_fingerprint']}; now "
            f"{dataset.classes}, split {dataset.fingerprint}); trial results would not be "
            f"comparable, so {fix}"
        )


def load_existing_study(storage_url: str, name: str) -> optuna.Study:
    """An existing study, or a StudyError that lists the studies the storage holds."""
    storage = open_storage(storage_url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = optuna.study.get_all_study_names(storage=storage)
        listing = ", ".join(sorted(names)) if names else "none"
        raise StudyError(
            f"no study named {name!r} in {storage_url}; run `autoclf search SPEC` first "
            f"(studies there: {listing})"
        ) from None


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=FINISHED)


def best_trial(study: optuna.Study) -> FrozenTrial:
    """The best COMPLETE trial, or a StudyError saying there is none yet."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        counts = {s.name: len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState}
        held = ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n) or "no trials"
        raise StudyError(
            f"study {study.study_name!r} has no complete trial yet ({held}); run "
            "`autoclf search SPEC` to finish some"
        )
    return study.best_trial
