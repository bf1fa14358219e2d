"""Samplers and pruners, built from the spec's `study.sampler` and `study.pruner`.

Seeding: trial n draws its randomness from `seed + n` (see `SeedPerTrial`). Trial numbers are
unique across workers, so a study is reproducible in one process, workers started together do not
propose the same configurations, and a resumed study does not replay its first random trials.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from automl_clf.spec.models import Spec


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


def _factory(spec: Spec) -> Callable[[int], BaseSampler]:
    """seed -> a fresh sampler of the spec's kind."""
    sampler: Any = spec.study.sampler
    quiet: dict[str, Any] = {"warn_independent_sampling": False}
    match sampler.kind:
        case "tpe":
            # multivariate + group: TPE models each conditional branch's params jointly;
            # constant_liar keeps concurrent workers from all exploring the same point.
            return lambda seed: optuna.samplers.TPESampler(
                seed=seed,
                n_startup_trials=sampler.n_startup_trials,
                multivariate=sampler.multivariate,
                group=sampler.multivariate,
                constant_liar=True,
            )
        case "cmaes":
            return lambda seed: optuna.samplers.CmaEsSampler(
                seed=seed,
                n_startup_trials=sampler.n_startup_trials,
                independent_sampler=optuna.samplers.RandomSampler(seed=seed),
                **quiet,
            )
        case "gp":
            return lambda seed: optuna.samplers.GPSampler(
                seed=seed, n_startup_trials=sampler.n_startup_trials, **quiet
            )
        case "qmc":
            # One scrambled sequence for the whole study (its position is kept in the
            # storage), so its seed stays fixed; conditional params fall back to random.
            fixed = spec.study.seed
            return lambda seed: optuna.samplers.QMCSampler(
                qmc_type=sampler.qmc_type,
                scramble=sampler.scramble,
                seed=fixed,
                independent_sampler=optuna.samplers.RandomSampler(seed=seed),
                warn_asynchronous_seeding=False,
                **quiet,
            )
        case "nsga2":
            return lambda seed: optuna.samplers.NSGAIISampler(
                seed=seed, population_size=sampler.population_size
            )
        case _:  # random; grid trials are all queued up front (see search/study.py)
            return lambda seed: optuna.samplers.RandomSampler(seed=seed)


def build_sampler(spec: Spec) -> BaseSampler:
    """The spec's sampler; trial n draws from `study.seed + n`."""
    return SeedPerTrial(_factory(spec), spec.study.seed)


def build_pruner(spec: Spec) -> optuna.pruners.BasePruner:
    """The spec's pruner (none for a multi-objective study). Steps are 1-based epochs."""
    pruner: Any = spec.study.effective_pruner
    match pruner.kind:
        case "median" | "percentile":
            # Optuna never prunes at step < n_warmup_steps; ours counts whole epochs.
            warmup = {
                "n_startup_trials": pruner.n_startup_trials,
                "n_warmup_steps": pruner.n_warmup_steps + 1,
                "interval_steps": pruner.interval_steps,
            }
            if pruner.kind == "median":
                return optuna.pruners.MedianPruner(**warmup)
            return optuna.pruners.PercentilePruner(pruner.percentile, **warmup)
        case "successive_halving":
            return optuna.pruners.SuccessiveHalvingPruner(
                min_resource=pruner.min_resource,
                reduction_factor=pruner.reduction_factor,
                min_early_stopping_rate=pruner.min_early_stopping_rate,
            )
        case "hyperband":
            return optuna.pruners.HyperbandPruner(
                min_resource=pruner.min_resource,
                max_resource=pruner.max_resource or spec.train.epochs,
                reduction_factor=pruner.reduction_factor,
            )
        case _:
            return optuna.pruners.NopPruner()
