"""The samplers `study.sampler` can name: one spec class each, registered in `SAMPLERS`.

A class holds the sampler's settings (what the spec accepts under its `kind`) and builds the
Optuna sampler they describe (`build`, which imports Optuna only when called). The spec's
`study.sampler` accepts exactly the registered kinds, the JSON Schema and `autoclf validate`
list them, `search/samplers.py` builds whichever the spec names, and the tests run every one
(`tests/search/test_samplers.py`).

To add a sampler: one class below, decorated `@SAMPLERS.add`, with `kind: Literal["name"] =
"name"`, its settings, and `build`; then its row in `tests/search/test_samplers.py`'s table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field

from automl_clf.spec.fields import NonNegativeInt
from automl_clf.spec.registry import SpecKinds
from automl_clf.spec.space import SpecModel

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler


class SamplerSpec(SpecModel):
    """Base of the sampler kinds.

    Class settings, read by the search's warnings and the study's rules:
        random_start: the setting that counts the trials drawn at random before the sampler's
            own model proposes one (None: it never models the history).
        queued_trials_start: whether queued trials with every value fixed (the defaults, a
            complete warm-start entry) count towards that start.
        single_objective: the sampler cannot optimise several objectives.
        enumerates_space: the sampler tries every configuration of a finite space once, each
            queued when the study opens (search/study.py): the space must be finite (checked
            at validation), n_trials is capped at its size, and neither the defaults nor a
            warning about a space smaller than n_trials comes before it.
    """

    kind: str
    random_start: ClassVar[str | None] = None
    queued_trials_start: ClassVar[bool] = True
    single_objective: ClassVar[bool] = False
    enumerates_space: ClassVar[bool] = False

    def build(self, seed: int, *, study_seed: int) -> BaseSampler:
        """A fresh Optuna sampler drawing from `seed` (`study.seed` + the trial number)."""
        raise NotImplementedError


SAMPLERS: SpecKinds[type[SamplerSpec]] = SpecKinds("sampler")
_QUIET: dict[str, Any] = {"warn_independent_sampling": False}


@SAMPLERS.add
class TPESamplerSpec(SamplerSpec):
    """Tree-structured Parzen estimator: Optuna's default, good for conditional spaces."""

    kind: Literal["tpe"] = "tpe"
    """`tpe`: selects this sampler."""
    n_startup_trials: NonNegativeInt = 10
    """Trials drawn at random before TPE models the results; a search of fewer trials is a
    random search."""
    multivariate: bool = True
    """Model parameters jointly (grouped by conditional branch), not one at a time."""
    random_start: ClassVar[str | None] = "n_startup_trials"

    def build(self, seed: int, *, study_seed: int) -> BaseSampler:
        import optuna

        # multivariate + group: TPE models each conditional branch's params jointly;
        # constant_liar keeps concurrent workers from all exploring the same point.
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=self.n_startup_trials,
            multivariate=self.multivariate,
            group=self.multivariate,
            constant_liar=True,
        )


@SAMPLERS.add
class RandomSamplerSpec(SamplerSpec):
    """Independent uniform (or log-uniform) draws: the baseline."""

    kind: Literal["random"] = "random"
    """`random`: selects this sampler."""

    def build(self, seed: int, *, study_seed: int) -> BaseSampler:
        import optuna

        return optuna.samplers.RandomSampler(seed=seed)


@SAMPLERS.add
class CmaEsSamplerSpec(SamplerSpec):
    """CMA-ES on the numeric parameters (categoricals are drawn at random); single objective."""

    kind: Literal["cmaes"] = "cmaes"
    """`cmaes`: selects this sampler."""
    n_startup_trials: NonNegativeInt = 1
    """Trials drawn at random before CMA-ES starts."""
    random_start: ClassVar[str | None] = "n_startup_trials"
    single_objective: ClassVar[bool] = True

    def build(self, seed: int, *, study_seed: int) -> BaseSampler:
        import optuna

        return optuna.samplers.CmaEsSampler(
            seed=seed,
            n_startup_trials=self.n_startup_trials,
            independent_sampler=optuna.samplers.RandomSampler(seed=seed),
            **_QUIET,
        )


@SAMPLERS.add
class GPSamplerSpec(SamplerSpec):
    """Gaussian-process Bayesian optimisation: sample-efficient for small budgets."""

    kind: Literal["gp"] = "gp"
    """`gp`: selects this sampler."""
    n_startup_trials: NonNegativeInt = 10
    """Trials drawn at random before the Gaussian process is fitted."""
    random_start: ClassVar[str | None] = "n_startup_trials"

    def build(self, seed: int, *, study_seed: int) -> BaseSampler:
        import optuna

        return optuna.samplers.GPSampler(
            seed=seed, n_startup_trials=self.n_startup_trials, **_QUIET
        )


@SAMPLERS.add
class QMCSamplerSpec(SamplerSpec):
    """Quasi-Monte Carlo: low-discrepancy points that cover the space evenly."""

    kind: Literal["qmc"] = "qmc"
    """`qmc`: selects this sampler."""
    qmc_type: Literal["sobol", "halton"] = "sobol"
    """The low-discrepancy sequence: sobol or halton."""
    scramble: bool = True
    """Randomise the sequence (seeded by study.seed)."""

    def build(self, seed: int, *, study_seed: int) -> BaseSampler:
        import optuna

        # One scrambled sequence for the whole study (its position is kept in the storage), so
        # its seed stays fixed; conditional params fall back to random.
        return optuna.samplers.QMCSampler(
            qmc_type=self.qmc_type,
            scramble=self.scramble,
            seed=study_seed,
            independent_sampler=optuna.samplers.RandomSampler(seed=seed),
            warn_asynchronous_seeding=False,
            **_QUIET,
        )


@SAMPLERS.add
class GridSamplerSpec(SamplerSpec):
    """Every configuration of a finite space once, in a seeded random order."""

    kind: Literal["grid"] = "grid"
    """`grid`: selects this sampler."""
    enumerates_space: ClassVar[bool] = True

    def build(self, seed: int, *, study_seed: int) -> BaseSampler:
        import optuna

        # Every grid point is queued when the study is created (search/study.py): the sampler
        # only ever fills what a queued point leaves open, which is nothing.
        return optuna.samplers.RandomSampler(seed=seed)


@SAMPLERS.add
class NSGAIISamplerSpec(SamplerSpec):
    """NSGA-II, the genetic algorithm for multi-objective studies (Pareto fronts)."""

    kind: Literal["nsga2"] = "nsga2"
    """`nsga2`: selects this sampler."""
    population_size: Annotated[int, Field(ge=2)] = 20
    """Trials per generation; the first generation is drawn at random."""
    random_start: ClassVar[str | None] = "population_size"
    # A generation counts only the trials the sampler drew from, not queued ones.
    queued_trials_start: ClassVar[bool] = False

    def build(self, seed: int, *, study_seed: int) -> BaseSampler:
        import optuna

        return optuna.samplers.NSGAIISampler(seed=seed, population_size=self.population_size)
