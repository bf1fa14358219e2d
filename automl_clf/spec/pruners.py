"""The pruners `study.pruner` can name: one spec class each, registered in `PRUNERS`.

A class holds the pruner's settings (epochs, for the ones that count steps), the rules that tie
them to `train.epochs`, the warnings for settings under which it can never prune, and builds
the Optuna pruner they describe (`build`, which imports Optuna only when called). Steps are
1-based epochs: the trial reports its objective after every epoch.

To add a pruner: one class below, decorated `@PRUNERS.add`, with `kind: Literal["name"] =
"name"`, its settings and `build`; then its row in `tests/search/test_pruners.py`'s table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from automl_clf.spec.fields import NonNegativeInt, PositiveInt
from automl_clf.spec.registry import SpecKinds
from automl_clf.spec.space import SpecModel

if TYPE_CHECKING:
    from optuna.pruners import BasePruner


class PrunerSpec(SpecModel):
    """Base of the pruner kinds."""

    kind: str

    def build(self, epochs: int) -> BasePruner:
        """The Optuna pruner for trials of at most `epochs` epochs (`train.epochs`)."""
        raise NotImplementedError

    def check(self, epochs: int) -> None:
        """Raise a ValueError (naming the field and the value) for settings that cannot hold
        for trials of at most `epochs` epochs."""

    def warnings(self, epochs: int, n_trials: float) -> list[str]:
        """One line for each setting under which this pruner never prunes in a search of
        `n_trials` trials (math.inf: as many as a time budget fits), saying what to change."""
        return []


PRUNERS: SpecKinds[type[PrunerSpec]] = SpecKinds("pruner")


class _WarmupPrunerSpec(PrunerSpec):
    n_startup_trials: NonNegativeInt = 5
    """Trials that are never pruned, to build a baseline."""
    n_warmup_steps: NonNegativeInt = 2
    """Epochs of each trial that are never pruned."""
    interval_steps: PositiveInt = 1
    """Consider pruning every this many epochs."""

    def _warmup(self) -> dict[str, int]:
        # Optuna never prunes at step < n_warmup_steps; ours counts whole epochs.
        return {
            "n_startup_trials": self.n_startup_trials,
            "n_warmup_steps": self.n_warmup_steps + 1,
            "interval_steps": self.interval_steps,
        }

    def warnings(self, epochs: int, n_trials: float) -> list[str]:
        lines = []
        if self.n_warmup_steps >= epochs:
            lines.append(
                f"study.pruner.n_warmup_steps is {self.n_warmup_steps}, but train.epochs is "
                f"{epochs}: no epoch is past the warm-up, so the pruner never prunes; set "
                f"n_warmup_steps below {epochs}"
            )
        if self.n_startup_trials >= n_trials:
            lines.append(
                f"study.pruner.n_startup_trials is {self.n_startup_trials}, but n_trials is "
                f"{n_trials}: the pruner waits for {self.n_startup_trials} complete trials, so "
                f"it never prunes; set n_startup_trials below {n_trials}"
            )
        return lines


@PRUNERS.add
class MedianPrunerSpec(_WarmupPrunerSpec):
    """Prune a trial whose objective at an epoch is worse than the median of earlier trials."""

    kind: Literal["median"] = "median"
    """`median`: selects this pruner."""

    def build(self, epochs: int) -> BasePruner:
        import optuna

        return optuna.pruners.MedianPruner(**self._warmup())


@PRUNERS.add
class PercentilePrunerSpec(_WarmupPrunerSpec):
    """Prune a trial outside the best `percentile` % of earlier trials at the same epoch."""

    kind: Literal["percentile"] = "percentile"
    """`percentile`: selects this pruner."""
    percentile: Annotated[float, Field(gt=0, lt=100)] = 25.0
    """Keep trials within the best this many percent at each epoch."""

    def build(self, epochs: int) -> BasePruner:
        import optuna

        return optuna.pruners.PercentilePruner(self.percentile, **self._warmup())


class _RungPrunerSpec(PrunerSpec):
    """A pruner whose first decision comes after `min_resource` epochs."""

    min_resource: PositiveInt = 1
    """Epochs before the first pruning decision."""

    def _most_epochs(self, epochs: int) -> int:
        """The epochs a trial can train: what the first rung must fit in."""
        return epochs

    def check(self, epochs: int) -> None:
        most = self._most_epochs(epochs)
        if self.min_resource > most:
            raise ValueError(
                f"study.pruner.min_resource: must be <= {most} (the epochs a trial can train), "
                f"got {self.min_resource}"
            )


@PRUNERS.add
class SuccessiveHalvingPrunerSpec(_RungPrunerSpec):
    """Asynchronous successive halving (ASHA): keep the best 1/`reduction_factor` at each rung
    of `min_resource` × reduction_factor^k epochs."""

    kind: Literal["successive_halving"] = "successive_halving"
    """`successive_halving`: selects this pruner."""
    min_resource: PositiveInt = 1
    """Epochs before the first rung (the warm-up)."""
    reduction_factor: Annotated[int, Field(ge=2)] = 3
    """Each rung keeps the best 1/reduction_factor of the trials that reach it."""
    min_early_stopping_rate: NonNegativeInt = 0
    """Skip this many first rungs (the first decision after min_resource × factor^rate
    epochs)."""

    def build(self, epochs: int) -> BasePruner:
        import optuna

        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=self.min_resource,
            reduction_factor=self.reduction_factor,
            min_early_stopping_rate=self.min_early_stopping_rate,
        )


@PRUNERS.add
class HyperbandPrunerSpec(_RungPrunerSpec):
    """Hyperband: several successive-halving brackets with different warm-ups."""

    kind: Literal["hyperband"] = "hyperband"
    """`hyperband`: selects this pruner."""
    min_resource: PositiveInt = 1
    """Epochs of the most aggressive bracket's first rung."""
    max_resource: PositiveInt | None = None
    """Epochs of the longest trials; default: train.epochs."""
    reduction_factor: Annotated[int, Field(ge=2)] = 3
    """Each rung keeps the best 1/reduction_factor of the trials that reach it."""

    def _most_epochs(self, epochs: int) -> int:
        return min(self.max_resource or epochs, epochs)

    def build(self, epochs: int) -> BasePruner:
        import optuna

        return optuna.pruners.HyperbandPruner(
            min_resource=self.min_resource,
            max_resource=self.max_resource or epochs,
            reduction_factor=self.reduction_factor,
        )


@PRUNERS.add
class NopPrunerSpec(PrunerSpec):
    """No pruning: every trial trains to its epoch cap or early stop."""

    kind: Literal["none"] = "none"
    """`none`: selects this pruner."""

    def build(self, epochs: int) -> BasePruner:
        import optuna

        return optuna.pruners.NopPruner()
