"""The `train` section: the trainer's settings, most of them searchable."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from automl_clf.spec.config import ClassWeighting, Device, Optimizer, Sampling, Schedule
from automl_clf.spec.fields import Fraction, NonNegativeFloat, PositiveFloat, PositiveInt, Seed
from automl_clf.spec.space import SpecModel, Tunable, candidate_values


class TrainSpec(SpecModel):
    """The trainer. `lr` is the optimizer's base learning rate at `batch_size` (no scaling)."""

    epochs: PositiveInt = 20  # the most epochs a trial trains; early stopping may end it sooner
    batch_size: Tunable[PositiveInt] = 64  # images per step
    optimizer: Tunable[Optimizer] = "adamw"
    lr: Tunable[PositiveFloat] = 1e-3
    weight_decay: Tunable[NonNegativeFloat] = 1e-4
    momentum: Tunable[Fraction] = 0.9  # only searched in trials whose optimizer is sgd
    nesterov: Tunable[bool] = False  # only searched in trials whose optimizer is sgd
    label_smoothing: Tunable[Fraction] = 0.0
    # cosine: decays to 0 at `epochs`; onecycle: up then down (torch's OneCycleLR); step:
    # × gamma every step_size epochs; plateau: × gamma after plateau_patience epochs without a
    # better val loss; constant. All but onecycle start with `warmup_epochs` of linear warm-up.
    schedule: Tunable[Schedule] = "cosine"
    warmup_epochs: Tunable[Annotated[float, Field(ge=0)]] = 0.0
    step_size: PositiveInt = 10  # epochs between decays (schedule: step)
    gamma: Annotated[float, Field(gt=0, lt=1)] = 0.1  # decay factor (step, plateau)
    plateau_patience: PositiveInt = 2  # epochs (schedule: plateau)
    grad_clip: PositiveFloat | None = None  # clip the gradients' global L2 norm to this
    early_stopping_patience: PositiveInt | None = 5  # epochs without a better val loss
    # balanced: n / (k × count); effective_number: (1 − β) / (1 − β^count), β = 0.999
    class_weighting: Tunable[ClassWeighting] = "none"
    sampling: Tunable[Sampling] = "shuffle"  # oversample: balanced draws
    seed: Seed = 0  # weight initialisation, batch order, augmentation, dropout
    # auto: CUDA when present, else the CPU; cpu; cuda; cuda:N (the GPU of index N). The
    # --device option of search, run, best and predict overrides it.
    device: Device = "auto"
    mixed_precision: bool = True  # on CUDA: bf16 (or fp16 with loss scaling) and channels_last
    threads: Annotated[int, Field(ge=1, le=256)] | None = None  # CPU threads; default: torch's

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrainSpec:
        for w in candidate_values(self.warmup_epochs):
            if w >= self.epochs:
                raise ValueError(f"warmup_epochs must be < epochs ({self.epochs}), got {w}")
        return self
