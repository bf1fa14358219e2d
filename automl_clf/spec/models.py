"""The spec: pydantic models of the YAML file a user writes.

Every tunable field (`Tunable[...]`) takes a literal, a range or a list of choices; see
`spec/space.py`. A trial turns the spec into one concrete `TrialConfig` (`spec/config.py`) via
`spec/resolve.py`. Relative paths resolve against the spec file's folder: the loader passes that
folder as validation context (`base_dir`).
"""

from __future__ import annotations

import difflib
import itertools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, Union

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from automl_clf.spec.config import ImageSize
from automl_clf.spec.duration import parse_duration
from automl_clf.spec.space import Choice, SpecModel, Tunable, candidate_values

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
OddKernel = Annotated[int, Field(ge=1, le=11)]
# What numpy, torch and Optuna take as a seed (0 to 2^32 - 1), with room for the trial number
# or seed index that is added to it.
Seed = Annotated[int, Field(ge=0, lt=2**31)]

# Validation metrics (reported every epoch) and, for multi-objective studies, measured costs.
Objective = Literal["val_loss", "accuracy", "balanced_accuracy", "macro_f1"]
ObjectiveName = Literal[
    "val_loss", "accuracy", "balanced_accuracy", "macro_f1", "n_params", "latency_ms"
]
SECONDARY_OBJECTIVES = ("n_params", "latency_ms")
OBJECTIVE_DIRECTIONS: dict[str, Literal["minimize", "maximize"]] = {
    "val_loss": "minimize",
    "accuracy": "maximize",
    "balanced_accuracy": "maximize",
    "macro_f1": "maximize",
    "n_params": "minimize",
    "latency_ms": "minimize",
}
PLAIN_CNN = "cnn"
PRETRAINED_CACHE = "cache"


def resolve_path(value: Path | str, info: ValidationInfo) -> Path:
    """Resolve a spec path against the spec file's folder (validation context `base_dir`)."""
    path = Path(value).expanduser()
    base = (info.context or {}).get("base_dir")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return path.resolve()


def _kind_union(*members: type[SpecModel], default: str) -> Any:
    """A union of spec models told apart by their `kind`, which may be written alone.

    `pruner: median` is short for `pruner: {kind: median}`; a mapping without `kind` takes
    `default`. An unknown kind is reported with the valid ones (see spec/load.py).
    """

    def kind_of(value: Any) -> str:
        if isinstance(value, dict):
            return f"={value.get('kind', default)}"
        return f"={getattr(value, 'kind', value)}"

    tagged = tuple(Annotated[m, Tag(f"={m.model_fields['kind'].default}")] for m in members)
    return Annotated[Union[tagged], Discriminator(kind_of)]  # noqa: UP007


def _kind_shorthand(value: Any) -> Any:
    """`sampler: random` → `{kind: random}`."""
    return {"kind": value} if isinstance(value, str) else value


def _kind_or_shorthand_schema(kinds: tuple[str, ...]) -> Any:
    """The JSON Schema of a kind union also accepts the kind alone (`pruner: none`)."""

    def extend(schema: dict[str, Any]) -> None:
        members = schema.pop("oneOf", None) or schema.pop("anyOf", [])
        schema["anyOf"] = [{"type": "string", "enum": list(kinds)}, *members]
        schema.pop("discriminator", None)

    return extend


class TPESamplerSpec(SpecModel):
    """Tree-structured Parzen estimator: Optuna's default, good for conditional spaces."""

    kind: Literal["tpe"] = "tpe"
    n_startup_trials: NonNegativeInt = 10  # random trials before TPE models the results
    multivariate: bool = True  # model parameters jointly (grouped by conditional branch)


class RandomSamplerSpec(SpecModel):
    """Independent uniform (or log-uniform) draws: the baseline."""

    kind: Literal["random"] = "random"


class CmaEsSamplerSpec(SpecModel):
    """CMA-ES on the numeric parameters (categoricals are drawn at random); single objective."""

    kind: Literal["cmaes"] = "cmaes"
    n_startup_trials: NonNegativeInt = 1  # random trials before CMA-ES starts


class GPSamplerSpec(SpecModel):
    """Gaussian-process Bayesian optimisation: sample-efficient for small budgets."""

    kind: Literal["gp"] = "gp"
    n_startup_trials: NonNegativeInt = 10  # random trials before the GP is fitted


class QMCSamplerSpec(SpecModel):
    """Quasi-Monte Carlo: low-discrepancy points that cover the space evenly."""

    kind: Literal["qmc"] = "qmc"
    qmc_type: Literal["sobol", "halton"] = "sobol"
    scramble: bool = True  # randomised (seeded) sequence


class GridSamplerSpec(SpecModel):
    """Every configuration of a finite space once, in a seeded random order."""

    kind: Literal["grid"] = "grid"


class NSGAIISamplerSpec(SpecModel):
    """NSGA-II, the genetic algorithm for multi-objective studies (Pareto fronts)."""

    kind: Literal["nsga2"] = "nsga2"
    population_size: Annotated[int, Field(ge=2)] = 20  # trials per generation


SAMPLER_SPECS = (
    TPESamplerSpec,
    RandomSamplerSpec,
    CmaEsSamplerSpec,
    GPSamplerSpec,
    QMCSamplerSpec,
    GridSamplerSpec,
    NSGAIISamplerSpec,
)
SAMPLER_KINDS = tuple(str(m.model_fields["kind"].default) for m in SAMPLER_SPECS)
if TYPE_CHECKING:
    SamplerSpec: TypeAlias = (
        TPESamplerSpec
        | RandomSamplerSpec
        | CmaEsSamplerSpec
        | GPSamplerSpec
        | QMCSamplerSpec
        | GridSamplerSpec
        | NSGAIISamplerSpec
    )
else:
    SamplerSpec = _kind_union(*SAMPLER_SPECS, default="tpe")


class _WarmupPrunerSpec(SpecModel):
    n_startup_trials: NonNegativeInt = 5  # trials that are never pruned, to build a baseline
    n_warmup_steps: NonNegativeInt = 2  # epochs of each trial that are never pruned
    interval_steps: PositiveInt = 1  # consider pruning every this many epochs


class MedianPrunerSpec(_WarmupPrunerSpec):
    """Prune a trial whose objective at an epoch is worse than the median of earlier trials."""

    kind: Literal["median"] = "median"


class PercentilePrunerSpec(_WarmupPrunerSpec):
    """Prune a trial outside the best `percentile` % of earlier trials at the same epoch."""

    kind: Literal["percentile"] = "percentile"
    percentile: Annotated[float, Field(gt=0, lt=100)] = 25.0


class SuccessiveHalvingPrunerSpec(SpecModel):
    """Asynchronous successive halving (ASHA): keep the best 1/`reduction_factor` at each rung
    of `min_resource` × reduction_factor^k epochs."""

    kind: Literal["successive_halving"] = "successive_halving"
    min_resource: PositiveInt = 1  # epochs before the first rung (the warm-up)
    reduction_factor: Annotated[int, Field(ge=2)] = 3
    min_early_stopping_rate: NonNegativeInt = 0  # skip this many first rungs


class HyperbandPrunerSpec(SpecModel):
    """Hyperband: several successive-halving brackets with different warm-ups."""

    kind: Literal["hyperband"] = "hyperband"
    min_resource: PositiveInt = 1  # epochs of the most aggressive bracket's first rung
    max_resource: PositiveInt | None = None  # epochs; default train.epochs
    reduction_factor: Annotated[int, Field(ge=2)] = 3


class NopPrunerSpec(SpecModel):
    """No pruning: every trial trains to its epoch cap or early stop."""

    kind: Literal["none"] = "none"


PRUNER_SPECS = (
    MedianPrunerSpec,
    PercentilePrunerSpec,
    SuccessiveHalvingPrunerSpec,
    HyperbandPrunerSpec,
    NopPrunerSpec,
)
PRUNER_KINDS = tuple(str(m.model_fields["kind"].default) for m in PRUNER_SPECS)
if TYPE_CHECKING:
    PrunerSpec: TypeAlias = (
        MedianPrunerSpec
        | PercentilePrunerSpec
        | SuccessiveHalvingPrunerSpec
        | HyperbandPrunerSpec
        | NopPrunerSpec
    )
else:
    PrunerSpec = _kind_union(*PRUNER_SPECS, default="median")


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
    sampler: SamplerSpec = Field(
        default=TPESamplerSpec(), json_schema_extra=_kind_or_shorthand_schema(SAMPLER_KINDS)
    )
    pruner: PrunerSpec = Field(
        default=MedianPrunerSpec(), json_schema_extra=_kind_or_shorthand_schema(PRUNER_KINDS)
    )
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

    @field_validator("sampler", "pruner", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return _kind_shorthand(value)

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
            if self.sampler.kind == "cmaes":
                raise ValueError(
                    "sampler: cmaes optimises a single objective, got objectives "
                    f"{self.objective}; use nsga2, tpe, gp, random, qmc or grid"
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
    def effective_pruner(self) -> Any:
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


class SplitSpec(SpecModel):
    """Fractions of a root without train/val/test folders; the split is stratified and seeded."""

    val: Annotated[float, Field(gt=0, lt=1)] = 0.15
    test: Annotated[float, Field(gt=0, lt=1)] = 0.15
    seed: Seed = 0

    @model_validator(mode="after")
    def _leave_training_data(self) -> SplitSpec:
        if self.val + self.test >= 0.9:
            raise ValueError(
                f"val + test must leave at least 10% for training, got "
                f"val={self.val} + test={self.test} = {self.val + self.test:.2f}"
            )
        return self


class DataSpec(SpecModel):
    """The images, and how every image is turned into a tensor (training and predict alike)."""

    root: Path | None = None  # <root>/<class>/* or <root>/{train,val,test}/<class>/*
    manifest: Path | None = None  # or a CSV with columns path,label[,split]
    image_size: ImageSize = 32  # pixels, square
    channels: Literal[1, 3] = 3  # 1 = grayscale, 3 = RGB; every image is converted to this
    # squash: stretch to a square; letterbox: fit inside and pad with black; center_crop: resize
    # the shorter side, then crop the centre
    resize: Literal["squash", "letterbox", "center_crop"] = "squash"
    # imagenet: what pretrained weights expect (a timm backbone's own pretrained mean/std,
    # ImageNet's for the CNN); dataset: the training split's; auto: imagenet for timm backbones,
    # dataset for the plain CNN
    normalize: Literal["auto", "imagenet", "dataset", "none"] = "auto"
    split: SplitSpec = SplitSpec()
    # drop: remove from val/test every image whose exact content is also in an earlier split
    # (train, then val), so no score is inflated by leakage; keep: only report them
    duplicates: Literal["drop", "keep"] = "drop"
    # memory: decoded images in RAM; stream: read from the on-disk cache by DataLoader workers
    # (memory-mapped below the machine's memory, else losslessly compressed shards: the same
    # pixels); auto: memory when the decoded set takes under a quarter of the machine's memory
    loading: Literal["auto", "memory", "stream"] = "auto"
    workers: Annotated[int, Field(ge=0, le=64)] | None = None  # stream workers; default: cores
    cache: bool = True  # keep decoded pixels on disk, keyed by file content and decoding
    cache_dir: Path | None = None  # default: studies/cache/ beside the study databases

    @field_validator("root", "manifest", mode="after")
    @classmethod
    def _exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = resolve_path(value, info)
        folder = info.field_name == "root"
        if not (path.is_dir() if folder else path.is_file()):
            raise ValueError(
                f"{'folder' if folder else 'file'} not found: {path} (relative paths resolve "
                "against the spec's folder)"
            )
        return path

    @field_validator("cache_dir", mode="after")
    @classmethod
    def _resolve_cache_dir(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else resolve_path(value, info)

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.root is None) == (self.manifest is None):
            raise ValueError(
                "give exactly one of root (an image folder) or manifest (a CSV of path,label)"
            )
        if self.loading == "stream" and not self.cache:
            raise ValueError("loading: stream reads the on-disk cache; set cache: true")
        return self


class CNNSpec(SpecModel):
    """The plain CNN: blocks of [conv → BN → ReLU] × convs_per_block → max-pool, then the head.

    These values are only searched in trials whose backbone is `cnn`.
    """

    filters: Tunable[Annotated[list[PositiveInt], Field(min_length=1, max_length=8)]] = Field(
        default_factory=lambda: [32, 64]
    )
    kernel_size: Tunable[OddKernel] = 3
    convs_per_block: Tunable[Annotated[int, Field(ge=1, le=4)]] = 1
    batch_norm: Tunable[bool] = True
    global_pool: Tunable[bool] = False  # global average pool instead of flatten before the head
    fc_width: Tunable[NonNegativeInt] = 128  # hidden units in the head; 0 = no hidden layer

    @field_validator("kernel_size", mode="after")
    @classmethod
    def _odd(cls, value: Any) -> Any:
        for k in candidate_values(value):
            if k % 2 == 0:
                raise ValueError(f"kernel size must be odd (to keep 'same' padding), got {k}")
        return value


class ModelSpec(SpecModel):
    """The network: the plain CNN (`cnn`) or any timm model by name, optionally pretrained."""

    backbone: Tunable[str] = PLAIN_CNN
    dropout: Tunable[Fraction] = 0.2  # before the final layer
    cnn: CNNSpec = CNNSpec()
    # A local weights file (.safetensors, or a torch checkpoint read with weights_only=True), or
    # `cache`: timm's own pretrained weights from the local Hugging Face cache (never
    # downloaded: a missing file is an error).
    pretrained: str | None = None
    # With pretrained weights: finetune (train everything), freeze (train the head only) or
    # partial (train the head and the last `unfreeze_stages` stages).
    transfer: Tunable[Literal["finetune", "freeze", "partial"]] = "finetune"
    unfreeze_stages: Tunable[PositiveInt] = 1  # transfer: partial
    backbone_lr_scale: Tunable[Annotated[float, Field(gt=0, le=1)]] = 1.0  # × lr, pretrained part

    @field_validator("backbone", mode="after")
    @classmethod
    def _known_backbone(cls, value: Any) -> Any:
        for name in candidate_values(value):
            check_backbone_name(name)
        return value

    @field_validator("pretrained", mode="after")
    @classmethod
    def _weights_exist(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value == PRETRAINED_CACHE:
            return value
        path = resolve_path(value, info)
        if not path.is_file():
            raise ValueError(
                f"weights file not found: {path} (autoclf never downloads weights: point "
                "pretrained at a local .safetensors or .pth file, or use `cache` for weights "
                "already in the local Hugging Face cache)"
            )
        return str(path)

    @model_validator(mode="after")
    def _pretrained_needs_timm(self) -> ModelSpec:
        if self.pretrained is not None and PLAIN_CNN in candidate_values(self.backbone):
            raise ValueError(
                "pretrained: weights can only be loaded into a timm backbone; the plain CNN "
                "is always trained from scratch"
            )
        return self


def check_backbone_name(name: str) -> None:
    """Raise a ValueError naming close matches when `name` is neither `cnn` nor a timm model."""
    if name == PLAIN_CNN:
        return
    import timm  # heavy: only imported when a spec names a timm backbone

    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, [*timm.list_models(), PLAIN_CNN], n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    prefix = re.match(r"[A-Za-z_]*", name)
    pattern = f"{prefix.group(0) if prefix else ''}*"
    raise ValueError(
        f"Unknown backbone {name!r}.{hint} List them with: autoclf backbones '{pattern}'"
    )


class TrainSpec(SpecModel):
    """The trainer. `lr` is the optimizer's base learning rate at `batch_size` (no scaling)."""

    epochs: PositiveInt = 20  # the most epochs a trial trains; early stopping may end it sooner
    batch_size: Tunable[PositiveInt] = 64  # images per step
    optimizer: Tunable[Literal["adam", "adamw", "sgd"]] = "adamw"
    lr: Tunable[PositiveFloat] = 1e-3
    weight_decay: Tunable[NonNegativeFloat] = 1e-4
    momentum: Tunable[Fraction] = 0.9  # only searched in trials whose optimizer is sgd
    nesterov: Tunable[bool] = False  # only searched in trials whose optimizer is sgd
    label_smoothing: Tunable[Fraction] = 0.0
    # cosine: decays to 0 at `epochs`; onecycle: up then down (torch's OneCycleLR); step:
    # × gamma every step_size epochs; plateau: × gamma after plateau_patience epochs without a
    # better val loss; constant. All but onecycle start with `warmup_epochs` of linear warm-up.
    schedule: Tunable[Literal["constant", "cosine", "onecycle", "step", "plateau"]] = "cosine"
    warmup_epochs: Tunable[Annotated[float, Field(ge=0)]] = 0.0
    step_size: PositiveInt = 10  # epochs between decays (schedule: step)
    gamma: Annotated[float, Field(gt=0, lt=1)] = 0.1  # decay factor (step, plateau)
    plateau_patience: PositiveInt = 2  # epochs (schedule: plateau)
    grad_clip: PositiveFloat | None = None  # clip the gradients' global L2 norm to this
    early_stopping_patience: PositiveInt | None = 5  # epochs without a better val loss
    # balanced: n / (k × count); effective_number: (1 − β) / (1 − β^count), β = 0.999
    class_weighting: Tunable[Literal["none", "balanced", "effective_number"]] = "none"
    sampling: Tunable[Literal["shuffle", "oversample"]] = "shuffle"  # oversample: balanced draws
    seed: Seed = 0  # weight initialisation, batch order, augmentation, dropout
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when present, else CPU
    mixed_precision: bool = True  # on CUDA: bf16 (or fp16 with loss scaling) and channels_last
    threads: Annotated[int, Field(ge=1, le=256)] | None = None  # CPU threads; default: torch's

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrainSpec:
        for w in candidate_values(self.warmup_epochs):
            if w >= self.epochs:
                raise ValueError(f"warmup_epochs must be < epochs ({self.epochs}), got {w}")
        return self


class TransformSpec(SpecModel):
    """One albumentations transform by class name, with its arguments: `{name: Blur, p: 0.3}`."""

    model_config = SpecModel.model_config | {"extra": "allow"}

    name: str


PolicyName = Literal["none", "light", "medium", "heavy"]
TransformList = list[TransformSpec]  # a custom albumentations pipeline, applied in order
# A named policy or a custom list, told apart by form, so a bad value gets one error line (the
# policy names, or what is wrong with the list) rather than one per form it failed.
Policy = Annotated[
    Annotated[PolicyName, Tag("=named")] | Annotated[TransformList, Tag("=list")],
    Discriminator(lambda v: "=list" if isinstance(v, list) else "=named"),
]


class AugmentSpec(SpecModel):
    """Training-split augmentation: a named policy or your own albumentations list (each
    searchable, together in one `policy: {choices: [...]}`), plus batch-level MixUp / CutMix.

    Policies (magnitudes in automl_clf/data/augment.py, scaled by `magnitude`): none; light (small
    shift/scale/rotate); medium (larger affine + brightness/contrast); heavy (medium + shear + a
    cut-out hole). Horizontal flips are separate (`hflip`): they change the meaning of digits and
    text. A custom list runs exactly as written: `magnitude` and `hflip` are only sampled in
    trials that pick a named policy.
    """

    policy: Tunable[Policy] = "none"  # e.g. {choices: [none, light, [{name: Blur}]]}
    magnitude: Tunable[Annotated[float, Field(gt=0, le=3)]] = 1.0  # × the policy's magnitudes
    hflip: Tunable[bool] = False
    # Custom lists only (the same as giving them as policy), e.g. {choices: [[...], [...]]}.
    transforms: Tunable[TransformList] | None = None
    mixup: Tunable[Annotated[float, Field(ge=0, le=1)]] = 0.0  # share of batches mixed up
    mixup_alpha: Tunable[PositiveFloat] = 0.2  # Beta(α, α) mixing weights; only when mixup > 0
    cutmix: Tunable[Annotated[float, Field(ge=0, le=1)]] = 0.0  # share of batches cut-mixed
    cutmix_alpha: Tunable[PositiveFloat] = 1.0  # only when cutmix > 0

    @field_validator("policy", "transforms", mode="after")
    @classmethod
    def _lists_build(cls, value: Any) -> Any:
        """Build every custom list the space holds once, so a bad transform name or argument is
        a spec error before any training, not a failed trial."""
        from automl_clf.data.augment import check_transforms

        searched = isinstance(value, Choice)
        for index, candidate in enumerate(candidate_values(value)):
            if not isinstance(candidate, list):
                continue
            try:
                check_transforms([t.model_dump() for t in candidate])
            except ValueError as exc:
                raise ValueError(f"choices.{index}: {exc}" if searched else str(exc)) from None
        return value

    @model_validator(mode="after")
    def _one_form(self) -> AugmentSpec:
        if self.transforms is not None and self.policy != "none":
            raise ValueError(
                "give either a policy or transforms, not both; to search named policies and "
                "custom lists together, list them all in policy: {choices: [light, [...]]}"
            )
        picks = candidate_values(self.transforms if self.transforms is not None else self.policy)
        named = any(isinstance(pick, str) for pick in picks)
        if not named and (self.hflip is not False or self.magnitude != 1.0):
            raise ValueError(
                "hflip and magnitude apply to named policies, and every policy this spec can "
                "pick is a custom list, which runs as written; add {name: HorizontalFlip} to a "
                "list, or drop hflip and magnitude"
            )
        # Checked on every pair the space can produce: a trial must run the shares it sampled,
        # never a silently smaller CutMix share.
        pairs = itertools.product(candidate_values(self.mixup), candidate_values(self.cutmix))
        mix, cut = max(pairs, key=sum)
        if mix + cut > 1 + 1e-9:
            raise ValueError(
                f"mixup + cutmix are shares of batches and must sum to <= 1, but the space "
                f"reaches {mix:g} + {cut:g}; lower the high ends (or the largest choices) so "
                "they sum to at most 1"
            )
        return self


class FinalSpec(SpecModel):
    """How `autoclf best --export` retrains the chosen configuration before the test split."""

    train_on: Literal["train", "train+val"] = "train+val"
    # The retrain's class weighting: the mission retrains the best configuration with balanced
    # class weights; `searched` keeps the trial's own train.class_weighting. The export records
    # the value that ran (model.json's config, spec.yaml, the report).
    class_weighting: Literal["none", "balanced", "searched"] = "balanced"
    seed: Seed = 0  # the first retrain's seed; further seeds count up from it
    # Retrains with seeds seed, seed+1, …; the best on the validation split (by the study's
    # objective) is exported and the spread across seeds is reported. Needs train_on: train.
    seeds: PositiveInt = 1
    # Test-time augmentation, reported beside the plain test result (the export predicts plainly):
    # hflip averages with the mirrored image; crops with 4 corner and 1 centre crop of 7/8 of
    # the image, each resized back.
    tta: tuple[Literal["hflip", "crops"], ...] = ()
    # Retrain the chosen trial(s) before the test (`always`), or export each trial's own
    # best-epoch weights as searched (`never`: no training at all, the model val chose is the
    # model tested; the search keeps those weights beside each complete trial). `auto` retrains
    # unless the caller has no time left for it (`autoclf run` under study.budget).
    retrain: Literal["auto", "always", "never"] = "auto"
    # Average the top-K complete trials of a single-objective study: the exported model returns
    # the log of the mean of their softmax probabilities. Each member is retrained (or taken as
    # searched, per `retrain`), so the final step takes about K times as long.
    ensemble: Annotated[int, Field(ge=1, le=10)] = 1

    @model_validator(mode="after")
    def _seeds_need_a_held_out_val(self) -> FinalSpec:
        if self.seeds > 1 and self.train_on == "train+val":
            raise ValueError(
                f"seeds: choosing the best of {self.seeds} seeds needs the validation split held "
                "out, but train_on is 'train+val'; set train_on: train, or seeds: 1"
            )
        if self.seeds > 1 and self.retrain == "never":
            raise ValueError(
                f"seeds: retrain 'never' exports the trials' own weights, so there is nothing to "
                f"train with {self.seeds} seeds; set seeds: 1, or retrain: always"
            )
        if len(set(self.tta)) != len(self.tta):
            raise ValueError(f"tta: each view at most once, got {list(self.tta)}")
        return self


class Spec(SpecModel):
    """A whole autoclf spec. `autoclf schema` prints its JSON Schema for editor completion."""

    study: StudySpec = StudySpec()
    data: DataSpec
    model: ModelSpec = ModelSpec()
    train: TrainSpec = TrainSpec()
    augment: AugmentSpec = AugmentSpec()
    final: FinalSpec = FinalSpec()

    @model_validator(mode="after")
    def _study_fits_the_space(self) -> Spec:
        from automl_clf.spec.warmstart import check_search_settings

        check_search_settings(self)  # warm-start entries, a grid's finiteness
        if self.final.ensemble > 1 and self.study.is_multi_objective:
            raise ValueError(
                f"final.ensemble: averaging the top {self.final.ensemble} trials needs one "
                f"objective to rank them by, got objectives {list(self.study.objectives)}; set "
                "final.ensemble: 1 and export a trial of the Pareto front with --trial N"
            )
        return self
