"""What a report says, gathered once: the HTML page, report.md and metrics.json are three views
of one `ReportContent`, so they cannot disagree.

The final room fills it (final/export.py); this room only reads it, so reports need nothing
from the final room's internals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from automl_clf.data.dataset import Pixels
from automl_clf.report.metrics import metrics_dict, summary_metrics
from automl_clf.report.search import SearchSummary
from automl_clf.train.metrics import EvalResult

N_MISTAKES = 16  # images in the gallery of most confident mistakes


@dataclass(frozen=True)
class DataSummary:
    root: str
    presplit: bool  # the root had train/val/test folders
    counts: dict[str, list[int]]  # split -> images per class, in class order
    skipped: list[tuple[str, str]]  # (path, reason) of every file left out
    fingerprint: str  # sha256 of which file (name and content) is in which split (data/dataset.py)
    n_files: int


@dataclass(frozen=True)
class SeedSummary:
    seed: int
    val: dict[str, float] | None  # validation metrics; None when val was trained on


@dataclass(frozen=True)
class MemberSummary:
    """One model of an ensemble."""

    trial: int
    backbone: str
    n_params: int
    objective_value: float | None  # the trial's validation objective during the search
    retrained: bool  # False: the trial's own best-epoch weights
    train_on: str
    epochs: int
    class_weighting: str
    mean: list[float]  # its normalisation (the ensemble re-normalises its input to it)
    std: list[float]


@dataclass
class FinalSummary:
    trial: int
    objective: str
    objective_value: float | None  # the trial's validation objective during the search
    params: dict[str, Any]  # what the search sampled
    config: dict[str, Any]  # the whole resolved configuration
    backbone: str
    n_params: int
    latency_ms: float  # one image, eager, on the CPU
    epochs: int
    train_on: str
    class_weighting: str
    seed: int  # the exported seed
    seeds: list[SeedSummary]
    preprocessing: dict[str, Any]
    formats: dict[str, dict[str, Any]]  # name -> FormatCheck as a dict
    retrained: bool = True  # False: the trial's own best-epoch weights (final.retrain: never)
    latency_threads: int | None = None  # torch CPU threads while timing (as the trials')
    members: list[MemberSummary] = field(default_factory=list)  # an ensemble's, best first
    notes: list[str] = field(default_factory=list)  # where the final model differs from the spec


@dataclass
class ReportContent:
    title: str  # the study name
    classes: list[str]
    data: DataSummary
    search: SearchSummary | None
    final: FinalSummary
    test: EvalResult
    test_paths: Sequence[Path]
    test_pixels: Pixels  # uint8 (N, H, W, C), for the gallery of mistakes
    tta_views: tuple[str, ...] = ()
    test_tta: EvalResult | None = None
    test_single: EvalResult | None = None  # an ensemble's member 0 alone, beside the ensemble
    metrics: dict[str, Any] = field(init=False)  # metrics.json, computed once

    def __post_init__(self) -> None:
        self.metrics = metrics_dict(self.test, self.classes)
        self.metrics["predictions_file"] = "test_predictions.csv"
        if self.test_tta is not None:
            self.metrics["tta"] = {
                "views": list(self.tta_views),
                **summary_metrics(self.test_tta),
            }
        if self.test_single is not None:  # the ensemble's result above; its best member here
            self.metrics["single"] = {
                "trial": self.final.trial,
                **summary_metrics(self.test_single),
            }
            self.metrics["ensemble"] = {
                "members": [member.trial for member in self.final.members],
                "averaging": "mean of the members' softmax probabilities",
            }
        self.metrics["seeds"] = seed_spread(self.final)

    def mistakes(self, n: int = N_MISTAKES) -> list[int]:
        """Indices of wrongly classified test images, the most confident first."""
        predictions = self.test.predictions
        wrong = np.flatnonzero(predictions != self.test.labels)
        confidence = self.test.probabilities.max(axis=1)
        return [int(i) for i in wrong[np.argsort(-confidence[wrong], kind="stable")][:n]]

    def image(self, index: int) -> np.ndarray:
        """One test image as (H, W) grayscale or (H, W, 3) colour uint8 pixels."""
        pixels = self.test_pixels[index]
        return pixels[..., 0] if pixels.shape[-1] == 1 else pixels

    def mistake_caption(self, index: int) -> str:
        """`true 7 → 1` and the predicted probability, on two lines."""
        probabilities = self.test.probabilities[index]
        predicted = int(probabilities.argmax())
        true = self.classes[int(self.test.labels[index])]
        return f"true {true} → {self.classes[predicted]}\n({probabilities[predicted]:.2f})"


def seed_spread(final: FinalSummary) -> dict[str, Any]:
    """Per-seed validation metrics and their mean, std, min and max (when val was held out)."""
    spread: dict[str, Any] = {"chosen": final.seed, "runs": []}
    for run in final.seeds:
        spread["runs"].append({"seed": run.seed, **(run.val or {})})
    measured = [run.val for run in final.seeds if run.val is not None]
    if len(measured) > 1:
        spread["val"] = {
            name: {
                "mean": float(np.mean([m[name] for m in measured])),
                "std": float(np.std([m[name] for m in measured])),
                "min": float(np.min([m[name] for m in measured])),
                "max": float(np.max([m[name] for m in measured])),
            }
            for name in measured[0]
        }
    return spread
