"""The `study` section: where the Optuna study lives, what it optimises, how it samples and
prunes (the kinds in spec/samplers.py and spec/pruners.py), and how long it runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from automl_clf.spec.duration import parse_duration
from automl_clf.spec.fields import PositiveFloat, PositiveInt, Seed, resolve_path
from automl_clf.spec.pruners import (
    PRUNERS,
    MedianPrunerSpec,
    NopPrunerSpec,
    PrunerSpec,
    SuccessiveHalvingPrunerSpec,
)
from automl_clf.spec.samplers import SAMPLERS, SamplerSpec, TPESamplerSpec
from automl_clf.spec.space import SpecModel

# Validation metrics (reported every epoch) and, for multi-objective studies, measured costs.
Objective = Literal["val_loss", "accuracy", "balanced_accuracy", "macro_f1"]
ObjectiveName = Literal[Objective, "n_params", "latency_ms"]
SECONDARY_OBJECTIVES = ("n_params", "latency_ms")
OBJECTIVE_DIRECTIONS: dict[str, Literal["minimize", "maximize"]] = {
    "val_loss": "minimize",
    "accuracy": "maximize",
    "balanced_accuracy": "maximize",
    "macro_f1": "maximize",
    "n_params": "minimize",
    "latency_ms": "minimize",
}

# Every registered sampler and pruner kind, as a mapping or the kind alone (`pruner: none`).
if TYPE_CHECKING:
    SamplerField: TypeAlias = SamplerSpec
    PrunerField: TypeAlias = PrunerSpec
else:
    SamplerField = SAMPLERS.field(default="tpe")
    PrunerField = PRUNERS.field(default="median")


class ConstraintsSpec(SpecModel):
    """Feasibility limits: a trial over a limit is recorded as infeasible (`trial.set_constraint`)
    and can never be the best trial; constraint-aware samplers (tpe, gp, nsga2) learn to avoid
    such configurations."""

    max_params: PositiveInt | None = None  # trainable parameters
    max_latency_ms: PositiveFloat | None = None  # measured batch-1 forward time, milliseconds

    def limits(self) -> dict[str, float]:
        """Constraint name (the trial's user attribute) -> limit, for the limits that are set."""
        pairs = (("n_params", self.max_params), ("latency_ms", self.max_latency_ms))
        return {name: float(limit) for name, limit in pairs if limit is not None}


class StudySpec(SpecModel):
    """The Optuna study: where it lives, what it optimises, how it samples, how long it runs."""

    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    # SQLAlchemy URL (sqlite:///…, postgresql://…) or journal:PATH (Optuna's journal file);
    # default: sqlite in the nearest studies/ folder.
    storage: str | None = None
    # Per-trial artifacts (checkpoints, figures); default: studies/<name>/ beside the database.
    # Workers on several machines need a shared folder here to resume each other's trials.
    artifacts: Path | None = None
    # One metric, or a list for a multi-objective study (a Pareto front); n_params and
    # latency_ms can only be further objectives of a list.
    objective: Annotated[
        Annotated[ObjectiveName, Tag("=one")]
        | Annotated[list[ObjectiveName], Field(min_length=2), Tag("=list")],
        Discriminator(lambda v: "=list" if isinstance(v, list) else "=one"),
    ] = "val_loss"
    direction: Literal["minimize", "maximize"] | None = None  # implied by the objective
    sampler: SamplerField = TPESamplerSpec()  # a kind of spec/samplers.py, or its name alone
    pruner: PrunerField = MedianPrunerSpec()  # a kind of spec/pruners.py, or its name alone
    n_trials: PositiveInt = 20  # finished (complete + pruned) trials, across all workers
    timeout: PositiveFloat | None = None  # seconds of wall-clock per `autoclf search` command
    # The whole job's wall-clock budget for `autoclf run` (search, final retrain, test, export,
    # report), e.g. 90s, 15m, 2h; `--time` overrides it. With a budget, n_trials (unless given)
    # no longer caps the search, and the pruner (unless given) is successive halving.
    budget: Annotated[float, BeforeValidator(parse_duration)] | None = None
    seed: Seed = 0  # the sampler's seed; trial n draws from seed + n
    max_consecutive_failures: PositiveInt = 5  # stop the search when this many fail in a row
    constraints: ConstraintsSpec = ConstraintsSpec()
    try_defaults: bool = True  # trial 0 tries the defaults of every searched field
    # Known-good configurations to try first: {param: value}, params as `autoclf validate`
    # names them (train.lr, model.cnn.filters); a param left out is sampled.
    warm_start: list[dict[str, Any]] = Field(default_factory=list)
    heartbeat_interval: PositiveInt = 20  # seconds between a running trial's heartbeats
    grace_period: PositiveInt = 90  # seconds without a heartbeat before a trial counts as dead

    @field_validator("artifacts", mode="after")
    @classmethod
    def _resolve_artifacts(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else resolve_path(value, info)

    @field_validator("objective", mode="after")
    @classmethod
    def _objectives_make_sense(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value in SECONDARY_OBJECTIVES:
                raise ValueError(
                    f"{value!r} cannot be the only objective (it is known only after training, "
                    f"so nothing could be pruned); list it after a validation metric, e.g. "
                    f"[accuracy, {value}], or limit it with study.constraints"
                )
            return value
        if value[0] in SECONDARY_OBJECTIVES:
            raise ValueError(
                f"the first objective is reported each epoch, so it must be a validation "
                f"metric, got {value[0]!r} first; e.g. [accuracy, {value[0]}]"
            )
        duplicates = sorted({v for v in value if value.count(v) > 1})
        if duplicates:
            raise ValueError(f"objectives must be distinct, got {', '.join(duplicates)} twice")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StudySpec:
        directions = self.directions
        if self.direction is not None:
            if len(directions) > 1:
                raise ValueError(
                    "direction: a multi-objective study takes each objective's own direction; "
                    "leave direction out"
                )
            if self.direction != directions[0]:
                raise ValueError(
                    f"direction: objective {self.objective!r} must be {directions[0]}d, got "
                    f"direction {self.direction!r}; leave direction out to use "
                    f"{directions[0]!r}"
                )
        if self.is_multi_objective:
            if "pruner" in self.model_fields_set and self.pruner.kind != "none":
                raise ValueError(
                    f"pruner: Optuna cannot prune multi-objective studies, got pruner "
                    f"{self.pruner.kind!r} with objectives {self.objective}; set pruner: none, "
                    "or optimise one objective and limit the others with study.constraints "
                    "(max_params, max_latency_ms)"
                )
            if self.sampler.single_objective:
                others = [k for k, c in SAMPLERS.items() if not c.single_objective]
                raise ValueError(
                    f"sampler: {self.sampler.kind} optimises a single objective, got objectives "
                    f"{self.objective}; use {', '.join(others[:-1])} or {others[-1]}"
                )
        if self.grace_period <= self.heartbeat_interval:
            raise ValueError(
                f"grace_period must be longer than heartbeat_interval, got grace_period="
                f"{self.grace_period}, heartbeat_interval={self.heartbeat_interval}"
            )
        return self

    @property
    def objectives(self) -> tuple[str, ...]:
        return (self.objective,) if isinstance(self.objective, str) else tuple(self.objective)

    @property
    def metric(self) -> str:
        """The first objective: the validation metric reported each epoch and pruned on."""
        return self.objectives[0]

    @property
    def is_multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def directions(self) -> list[Literal["minimize", "maximize"]]:
        return [OBJECTIVE_DIRECTIONS[name] for name in self.objectives]

    @property
    def resolved_direction(self) -> Literal["minimize", "maximize"]:
        """The direction of the first objective (the only one in a single-objective study)."""
        return self.directions[0]

    @property
    def effective_pruner(self) -> PrunerSpec:
        """The pruner in force: none for a multi-objective study, which Optuna cannot prune;
        successive halving on epochs when a time budget is set and no pruner is given, so a
        budget is spent on many short trials and few long ones."""
        if self.is_multi_objective:
            return NopPrunerSpec()
        if self.budget is not None and "pruner" not in self.model_fields_set:
            return SuccessiveHalvingPrunerSpec()
        return self.pruner

    @property
    def trial_cap(self) -> int | None:
        """Finished trials the search aims at: `n_trials`, or None (as many as fit) when a time
        budget is set and n_trials is not given."""
        if self.budget is not None and "n_trials" not in self.model_fields_set:
            return None
        return self.n_trials
