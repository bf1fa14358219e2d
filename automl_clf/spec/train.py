"""The `train` section: the trainer's settings, most of them searchable."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from automl_clf.spec.config import ClassWeighting, Device, Optimizer, Sampling, Schedule
from automl_clf.spec.fields import Fraction, NonNegativeFloat, PositiveFloat, PositiveInt, Seed
from automl_clf.spec.space import SpecModel, Tunable, candidate_values


class TrainSpec(SpecModel):
    """The trainer. `lr` is the optimizer's base learning rate at `batch_size` (no scaling)."""

    epochs: PositiveInt = 20
    """The most epochs a trial trains; early stopping may end it sooner."""
    batch_size: Tunable[PositiveInt] = 64
    """Images per step."""
    optimizer: Tunable[Optimizer] = "adamw"
    """adam, adamw (decoupled weight decay) or sgd (with momentum, nesterov)."""
    lr: Tunable[PositiveFloat] = 1e-3
    """The optimizer's base learning rate at `batch_size` (no scaling); search it on a log
    range: {low: 1.0e-4, high: 1.0e-2, log: true}."""
    weight_decay: Tunable[NonNegativeFloat] = 1e-4
    """L2 penalty (decoupled for adamw)."""
    momentum: Tunable[Fraction] = 0.9
    """SGD momentum; only searched in trials whose optimizer is sgd."""
    nesterov: Tunable[bool] = False
    """Nesterov momentum; only searched in trials whose optimizer is sgd."""
    label_smoothing: Tunable[Fraction] = 0.0
    """Label smoothing ε: each target becomes 1 − ε on its class plus ε spread evenly over all
    classes."""
    schedule: Tunable[Schedule] = "cosine"
    """cosine: decays to 0 at `epochs`; onecycle: up then down (torch's OneCycleLR); step:
    × gamma every step_size epochs; plateau: × gamma after plateau_patience epochs without a
    better val loss; constant. All but onecycle start with `warmup_epochs` of linear
    warm-up."""
    warmup_epochs: Tunable[Annotated[float, Field(ge=0)]] = 0.0
    """Epochs of linear learning-rate warm-up, step by step (fractions allowed); below
    `epochs`."""
    step_size: PositiveInt = 10
    """Epochs between decays (schedule: step)."""
    gamma: Annotated[float, Field(gt=0, lt=1)] = 0.1
    """Decay factor (schedule: step, plateau)."""
    plateau_patience: PositiveInt = 2
    """Epochs without a better val loss before a decay (schedule: plateau)."""
    grad_clip: PositiveFloat | None = None
    """Clip the gradients' global L2 norm to this; none: no clipping."""
    early_stopping_patience: PositiveInt | None = 5
    """End a trial after this many epochs without a better val loss (its best epoch is kept);
    none: train every epoch."""
    class_weighting: Tunable[ClassWeighting] = "none"
    """Loss weights per class, for imbalanced data: balanced: n / (k × count);
    effective_number: (1 − β) / (1 − β^count), β = 0.999; none."""
    sampling: Tunable[Sampling] = "shuffle"
    """shuffle: each image once per epoch; oversample: classes drawn equally often."""
    seed: Seed = 0
    """Seeds weight initialisation, batch order, augmentation and dropout."""
    device: Device = "auto"
    """auto: CUDA when present, else the CPU; cpu; cuda (the current GPU); cuda:N (the GPU of
    index N). The --device option of search, run, best and predict overrides it."""
    mixed_precision: bool = True
    """On CUDA: bf16 (or fp16 with loss scaling) and channels_last."""
    threads: Annotated[int, Field(ge=1, le=256)] | None = None
    """CPU threads for torch, held for the whole run. Default: torch's count (a share under
    --jobs) capped at the CPUs this process may use (affinity, cgroup CPU quota); under a time
    budget, on the CPU, the count that measures fastest as it trains: 1, half of it or all."""

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrainSpec:
        for w in candidate_values(self.warmup_epochs):
            if w >= self.epochs:
                raise ValueError(f"warmup_epochs must be < epochs ({self.epochs}), got {w}")
        return self
