"""The `study` section: where the Optuna study lives, what it optimises, how it samples and
prunes (the kinds in spec/samplers.py and spec/pruners.py), and how long it runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import (
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from automl_clf.spec.duration import Duration
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
MAX_HEARTBEAT_S = 3600  # study.heartbeat_interval's bound (seconds)
MAX_GRACE_S = 7 * 24 * 3600  # study.grace_period's bound (seconds)
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

    max_params: PositiveInt | None = None
    """Most trainable parameters a feasible trial's model may have."""
    max_latency_ms: PositiveFloat | None = None
    """Most milliseconds a feasible trial's model may take for one image (batch 1, measured on
    the training device)."""

    def limits(self) -> dict[str, float]:
        """Constraint name (the trial's user attribute) -> limit, for the limits that are set."""
        pairs = (("n_params", self.max_params), ("latency_ms", self.max_latency_ms))
        return {name: float(limit) for name, limit in pairs if limit is not None}


class StudySpec(SpecModel):
    """The Optuna study: where it lives, what it optimises, how it samples, how long it runs."""

    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """The study's name in its storage (letters, digits, `_.-`); default: the spec file's name
    without .yaml. `--study-name` overrides it."""
    storage: str | None = None
    """SQLAlchemy URL (sqlite:///…, postgresql://…) or journal:PATH (Optuna's journal file);
    default: sqlite in the nearest studies/ folder at or above the spec."""
    artifacts: Path | None = None
    """Per-trial artifacts (checkpoints, figures); default: studies/<name>/ beside the
    database. Workers on several machines need a shared folder here to resume each other's
    trials."""
    objective: Annotated[
        Annotated[ObjectiveName, Tag("=one")]
        | Annotated[list[ObjectiveName], Field(min_length=2), Tag("=list")],
        Discriminator(lambda v: "=list" if isinstance(v, list) else "=one"),
    ] = "val_loss"
    """What the search optimises: val_loss, accuracy, balanced_accuracy or macro_f1 (on the
    validation split, reported each epoch), or a list for a multi-objective study (a Pareto
    front) whose further entries may be n_params or latency_ms. The direction follows."""
    direction: Literal["minimize", "maximize"] | None = None
    """Implied by the objective; give it only to state it (a contradiction is an error)."""
    sampler: SamplerField = TPESamplerSpec()
    """How trials are proposed: a kind's name alone (`random`) or a mapping with its settings
    (`{kind: gp, n_startup_trials: 5}`)."""
    pruner: PrunerField = MedianPrunerSpec()
    """How weak trials are stopped early, judged on the objective after each epoch: a kind's
    name alone (`none`) or a mapping with its settings. Under a time budget, when not given:
    successive_halving."""
    n_trials: PositiveInt = 20
    """Finished (complete + pruned) trials the study should hold, across every run and worker;
    under a time budget it caps the search only when given."""
    timeout: PositiveFloat | None = None
    """Seconds of wall-clock per `autoclf search` command (`--timeout` overrides it)."""
    budget: Duration | None = None
    """The whole job's wall-clock budget for `autoclf run` (search, final retrain, test,
    export, report): seconds, or e.g. 90s, 15m, 2h, 1h30m; `--time` overrides it. With a
    budget, n_trials (unless given) no longer caps the search, and the pruner (unless given)
    is successive halving."""
    fit_budget: Literal["auto", "off"] = "auto"
    """Under a budget, when it buys fewer than 8 complete trials: auto shrinks what a new
    study searches (the slowest backbones, train.epochs, data.image_size, TPE's random
    start-up, final.ensemble) and says what it changed; off keeps the spec as written."""
    seed: Seed = 0
    """The sampler's seed; trial n draws from seed + n."""
    max_consecutive_failures: PositiveInt = 5
    """Stop the search (exit 1) when this many trials fail in a row."""
    constraints: ConstraintsSpec = ConstraintsSpec()
    """Limits a trial must meet to be feasible (never the best otherwise)."""
    try_defaults: bool = True
    """Trial 0 tries the defaults of every searched field (each field's default where it lies
    in the space, else the middle of the range or the first choice)."""
    warm_start: list[dict[str, Any]] = Field(
        default_factory=list, json_schema_extra={"default": []}
    )
    """Known-good configurations to try first: {param: value}, params as `autoclf validate`
    names them (train.lr, model.cnn.filters); a param left out is sampled."""
    heartbeat_interval: Annotated[PositiveInt, Field(le=MAX_HEARTBEAT_S)] = 20
    """Seconds between a running trial's heartbeats (at most an hour: past the platform's
    longest wait the heartbeat thread dies of OverflowError, and a rarer beat only makes a
    dead trial wait longer to be retried)."""
    grace_period: Annotated[PositiveInt, Field(le=MAX_GRACE_S)] = 90
    """Seconds without a heartbeat before a trial counts as dead and is retried (at most a
    week)."""

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
