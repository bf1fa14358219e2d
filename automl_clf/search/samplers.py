"""Samplers and pruners, built from the spec's `study.sampler` and `study.pruner` (each kind is
one class of spec/samplers.py or spec/pruners.py, which builds its Optuna object), and the
warnings for settings under which one of them can never act.

Seeding: trial n draws its randomness from `seed + n` (see `SeedPerTrial`). Trial numbers are
unique across workers, so a study is reproducible in one process, workers started together do not
propose the same configurations, and a resumed study does not replay its first random trials.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from automl_clf.spec.describe import describe_space
from automl_clf.spec.models import Spec
from automl_clf.spec.resolve import resolve
from automl_clf.spec.space import FixedParams
from automl_clf.spec.warmstart import default_params, warm_start_params


class SeedPerTrial(BaseSampler):
    """A sampler rebuilt with seed `seed + trial.number` before each trial.

    Optuna samplers keep one random stream per process, so workers started with one seed would
    repeat each other's draws; their remaining state lives in the storage (the history, CMA-ES
    and NSGA-II generations, the QMC sequence index), so rebuilding loses nothing but caches.
    """

    def __init__(self, make: Callable[[int], BaseSampler], seed: int) -> None:
        self.make = make
        self.seed = seed
        self.inner = make(seed)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.inner = self.make(self.seed + trial.number)
        self.inner.before_trial(study, trial)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self.inner.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


def build_sampler(spec: Spec) -> BaseSampler:
    """The spec's sampler (a kind of spec/samplers.py); trial n draws from `study.seed + n`."""
    sampler, seed = spec.study.sampler, spec.study.seed
    return SeedPerTrial(lambda trial_seed: sampler.build(trial_seed, study_seed=seed), seed)


def build_pruner(spec: Spec) -> optuna.pruners.BasePruner:
    """The spec's pruner (a kind of spec/pruners.py; none for a multi-objective study). Steps
    are 1-based epochs."""
    return spec.study.effective_pruner.build(spec.train.epochs)


def search_warnings(spec: Spec, n_trials: int | None = None) -> list[str]:
    """One line for each part of the search that can never act within `n_trials` (default
    `study.n_trials`; none under a time budget without one), saying what to change.

    Each is a valid spec that silently searches less than it says: a pruner that never prunes,
    a model-based sampler that never leaves its random start-up (a random search under another
    name), or a space smaller than the budget (trials that repeat one another).
    """
    cap = n_trials or spec.study.trial_cap
    n: float = math.inf if cap is None else cap  # a time budget alone: as many trials as fit
    sampler = spec.study.sampler
    warnings = spec.study.effective_pruner.warnings(spec.train.epochs, n)
    setting = sampler.random_start
    if setting is not None:
        start, queued, because = getattr(sampler, setting), 0, ""
        if not sampler.queued_trials_start:  # e.g. a generation counts only trials it drew
            queued = fully_queued(spec)
            because = (
                f" and {queued} queued trial(s) with every value fixed belong to no generation"
            )
        if start + queued >= n:
            warnings.append(
                f"study.sampler.{setting} is {start}{because}, but n_trials is {n}: every trial "
                f"is drawn at random and {sampler.kind} never proposes one; set {setting} below "
                f"{n - queued}, or raise n_trials"
            )
    space = describe_space(spec)
    if not sampler.enumerates_space and space.complete and space.size < n < math.inf:  # capped
        size = int(space.size)
        if size == 1:
            warnings.append(
                f"the search space is a single configuration (nothing is searched), but "
                f"n_trials is {n}: every trial trains the same model; set n_trials: 1, or make "
                "a field a range or choices"
            )
        else:
            repeats = n - size
            warnings.append(
                f"the search space has {size} configurations, but n_trials is {n}: at least "
                f"{repeats} trial{'s' if repeats > 1 else ''} repeat{'' if repeats > 1 else 's'} "
                f"one; set n_trials: {size} (or sampler: grid, which runs each once), or search "
                "more fields"
            )
    return warnings


def random_start_warnings(spec: Spec, n_finished: int, target: int | None) -> list[str]:
    """After a search: one line when the study's `n_finished` trials never got past the
    sampler's random start-up, which a time budget or timeout (unlike n_trials, warned about
    before the search by `search_warnings`) only shows once it has run out."""
    sampler = spec.study.sampler
    setting = sampler.random_start
    if setting is None or n_finished == 0:
        return []
    start = getattr(sampler, setting)
    if n_finished > start or (target is not None and start >= target):  # fine, or warned
        return []
    return [
        f"all {n_finished} finished trial(s) were drawn at random or queued: {sampler.kind} "
        f"proposes trials only after study.sampler.{setting} ({start}) have finished; give the "
        f"search more time, or lower {setting}"
    ]


def fully_queued(spec: Spec) -> int:
    """Trials queued before the sampler with every value fixed (the defaults, complete
    warm-start entries): the sampler draws nothing for them."""
    entries = [default_params(spec)] if spec.study.try_defaults else []
    full = 0
    for entry in entries + warm_start_params(spec):
        source = FixedParams(entry, strict=False)
        resolve(spec, source)
        full += set(source.used) <= set(entry)
    return full
