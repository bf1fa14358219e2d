"""Calibrated confidence, "unsure" answers and an out-of-distribution flag for the final model.

**Temperature scaling** (Guo et al. 2017, "On calibration of modern neural networks"): one
scalar T > 0 divides the final model's logits, T chosen to minimise the negative log-likelihood
(NLL) of held-out validation predictions. T > 1 softens an over-confident model, T < 1 sharpens
an under-confident one (MixUp, label smoothing); the argmax, so every prediction and the
accuracy, is unchanged. The NLL is convex in 1/T, so T is found by bisection on the sign of its
derivative over `TEMPERATURE_RANGE` (no optimiser library), on the log-probabilities of the
validation predictions: softmax(log p / T) is exactly what dividing the logits by T gives.

Which validation predictions (final/retrain.py gathers them per member, `HeldOut`):

- a member as searched (`final.retrain: never`, or a retrain the budget skipped): the
  probabilities its trial kept for its best epoch (train/weights.py), the exported weights'
  own predictions on val;
- a member retrained on train: the retrain's own best-epoch predictions on val (the chosen
  seed's);
- a member retrained on train+val has seen val, so its own predictions there are not held out:
  its trial's kept predictions stand in (the same configuration trained on train, as searched),
  and the retrained member inherits T from them. Caveat: the retrain saw more data for the same
  epochs, so its confidence can differ a little from its trial's; the report says when T came
  from there.

An ensemble's validation predictions are the weighted mix of its members' (exactly what
final/ensemble.py computes), so T is fitted for the ensemble as a whole, on the numbers its
members and weights were chosen on.

**In the export.** `Calibrated(model, T)` returns logits / T. An `Ensemble` returns
log-probabilities; dividing those by T is the same operation (softmax(log p / T) is p^(1/T),
renormalised). TorchScript and ONNX are traced from the wrapper, so they carry T and the format
parity checks compare the calibrated outputs; the Predictor wraps its network the same way.
model.json's `calibration` holds T; an export without it (made before, or `final.calibrate:
none`) predicts from the raw logits exactly as before.

**Unsure.** Below `min_confidence` (the top calibrated probability), `predict` answers `unsure`;
the report's accuracy–coverage curve shows what each threshold costs (report/metrics.py).

**Out of distribution.** The score is the top calibrated probability (maximum softmax,
Hendrycks & Gimpel 2017), compared with the same score on the validation images: model.json
keeps its percentiles 0..100 and the one below which an image is flagged
(`final.ood_percentile`, default 5: about 5 % of images like the validation ones are flagged).
Not the energy score (-logsumexp of the logits, Liu et al. 2020), often better for one network:
an ensemble's outputs are normalised log-probabilities, whose logsumexp is 0 for every image,
so the energy would say nothing there; the maximum softmax is one quantity for one model and an
ensemble, any runtime computes it from the probabilities alone, and it is the probability
`predict` already prints. Its limit: it flags what the model is unsure about, an image between
two classes as well as one unlike the training data, and misses an image the model is wrongly
sure of.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

TEMPERATURE_RANGE = (0.05, 20.0)  # T is fitted inside; its ends are reported as bounds hit
_EPS = 1e-12  # log(0) guard: a probability of 0 in float32 is below e^-103 anyway
_BISECTIONS = 60  # halvings of log(1/T)'s interval: far below float precision of T
UNSURE = "unsure"  # what `predict` answers below the minimum confidence
N_QUANTILES = 101  # the validation scores' percentiles 0, 1, ..., 100 kept in model.json


class CalibrationRecord(BaseModel):
    """model.json `calibration`: the temperature the exported graphs divide their logits by,
    and what it was fitted on (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["temperature"] = "temperature"
    temperature: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    fitted_on: str  # which validation predictions, in words (module docstring)
    n_images: int  # validation images
    val_log_loss_before: float  # mean NLL at T = 1
    val_log_loss_after: float  # at `temperature`
    note: str | None = None  # why T was not fitted, or hit a bound of TEMPERATURE_RANGE


class OutOfDistributionRecord(BaseModel):
    """model.json `ood`: an image is flagged when its `score` is below `threshold`, the
    `percentile`-th percentile of the validation images' scores (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    score: Literal["max_softmax"] = "max_softmax"  # the top calibrated probability
    percentile: Annotated[float, Field(gt=0, lt=50)]
    threshold: float  # flagged below
    quantiles: list[float] = Field(min_length=N_QUANTILES, max_length=N_QUANTILES)
    n_images: int
    fitted_on: str

    @model_validator(mode="after")
    def _ordered(self) -> OutOfDistributionRecord:
        if any(b < a for a, b in zip(self.quantiles, self.quantiles[1:], strict=False)):
            raise ValueError("quantiles: must not decrease (the percentiles 0..100 in order)")
        return self

    def flags(self, scores: np.ndarray) -> np.ndarray:
        """True for each score below the threshold."""
        return np.asarray(scores) < self.threshold

    def percentile_of(self, scores: np.ndarray) -> np.ndarray:
        """Where each score falls among the validation images' (0: below every one, 100: at or
        above the highest), interpolated between the kept percentiles."""
        return np.interp(scores, self.quantiles, np.linspace(0.0, 100.0, N_QUANTILES))


@dataclass(frozen=True)
class HeldOut:
    """Validation predictions of the final model that it did not train on (as far as they
    exist): `probabilities` (N, n_classes) in the validation split's order, and where they
    come from in words."""

    probabilities: np.ndarray
    labels: np.ndarray
    fitted_on: str


class Calibrated(nn.Module):
    """`model`'s logits divided by `temperature`: the exported graph and the Predictor's."""

    temperature: torch.Tensor  # 0-d buffer, recomputed from model.json on loading

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        if not (temperature > 0 and math.isfinite(temperature)):
            raise ValueError(f"a temperature must be a positive number, got {temperature}")
        self.model = model
        where = next(model.parameters(), torch.empty(0)).device  # beside the network's weights
        self.register_buffer(
            "temperature",
            torch.tensor(temperature, dtype=torch.float32, device=where),
            persistent=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).float() / self.temperature


def calibrated(model: nn.Module, calibration: CalibrationRecord | None) -> nn.Module:
    """`model` as an export with `calibration` serves it: wrapped, or as it is without one."""
    return model if calibration is None else Calibrated(model, calibration.temperature)


def rescale(probabilities: np.ndarray, factor: float) -> np.ndarray:
    """softmax(factor · log p): the probabilities of the logits multiplied by `factor` (1/T
    calibrates with temperature T; T undoes it). float64."""
    z = factor * np.log(np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1.0))
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes (nats)."""
    picked = np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, _EPS, 1.0))))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, str | None]:
    """The temperature in TEMPERATURE_RANGE minimising the NLL of `probabilities` (N, C) for
    `labels`, and a note when it is not an interior minimum.

    With no mistake on validation the NLL falls all the way to T → 0 (every answer right, so
    more confidence always looks better): there is nothing to fit, and T stays 1.
    """
    if len(labels) == 0:
        return 1.0, "no validation images: nothing to fit"
    z = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1.0))
    if (z.argmax(axis=1) == labels).all():
        return 1.0, (
            "no mistake on the validation split: the likelihood only grows as T falls, so "
            "there is nothing to fit; left at T = 1"
        )
    true = z[np.arange(len(labels)), labels]

    def slope(beta: float) -> float:  # d NLL / d beta, beta = 1/T: increasing (NLL convex)
        scaled = beta * z
        scaled -= scaled.max(axis=1, keepdims=True)
        p = np.exp(scaled)
        p /= p.sum(axis=1, keepdims=True)
        return float(np.mean((p * z).sum(axis=1) - true))

    low, high = math.log(1 / TEMPERATURE_RANGE[1]), math.log(1 / TEMPERATURE_RANGE[0])
    if slope(math.exp(low)) >= 0:
        return TEMPERATURE_RANGE[1], f"T reached the upper bound {TEMPERATURE_RANGE[1]:g}"
    if slope(math.exp(high)) <= 0:
        return TEMPERATURE_RANGE[0], f"T reached the lower bound {TEMPERATURE_RANGE[0]:g}"
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2
        if slope(math.exp(middle)) < 0:
            low = middle
        else:
            high = middle
    return 1.0 / math.exp((low + high) / 2), None


def calibration_record(held_out: HeldOut) -> CalibrationRecord:
    """Fit the temperature on `held_out` and record it (never worse than T = 1 there)."""
    probabilities, labels = held_out.probabilities, held_out.labels
    temperature, note = fit_temperature(probabilities, labels)
    before = log_loss(probabilities, labels) if len(labels) else 0.0
    after = log_loss(rescale(probabilities, 1 / temperature), labels) if len(labels) else 0.0
    if after > before:  # float noise around T = 1; the fit never makes validation worse
        temperature, after = 1.0, before
    return CalibrationRecord(
        temperature=temperature,
        fitted_on=held_out.fitted_on,
        n_images=len(labels),
        val_log_loss_before=before,
        val_log_loss_after=after,
        note=note,
    )


def ood_record(
    held_out: HeldOut, calibration: CalibrationRecord | None, percentile: float
) -> OutOfDistributionRecord | None:
    """The validation scores' percentiles and the threshold at `percentile`, from the held-out
    predictions as the export serves them (calibrated when it is); None without validation
    images."""
    if len(held_out.labels) == 0:
        return None
    probabilities = held_out.probabilities
    if calibration is not None:
        probabilities = rescale(probabilities, 1 / calibration.temperature)
    scores = max_softmax(probabilities)
    quantiles = np.percentile(scores, np.linspace(0.0, 100.0, N_QUANTILES))
    return OutOfDistributionRecord(
        percentile=percentile,
        threshold=float(np.percentile(scores, percentile)),
        quantiles=[float(q) for q in np.maximum.accumulate(quantiles)],
        n_images=len(scores),
        fitted_on=held_out.fitted_on,
    )


def max_softmax(probabilities: np.ndarray) -> np.ndarray:
    """The out-of-distribution score of each row: its top probability."""
    return np.asarray(probabilities).max(axis=1)


def mix(parts: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """The weighted mean of members' probabilities (weights normalised), as an Ensemble's."""
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in parts])
    share = np.asarray(weights, dtype=np.float64) / float(sum(weights))
    return np.tensordot(share, stacked, axes=1)
