"""What a report says, gathered once: the HTML page, report.md and metrics.json are three views
of one `ReportContent`, so they cannot disagree.

The final room fills it (final/export.py); this room only reads it, so reports need nothing
from the final room's internals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.trial import FrozenTrial

from automl_clf.data.dataset import Pixels
from automl_clf.report.metrics import (
    calibration_bins,
    coverage_dict,
    expected_calibration_error,
    metrics_dict,
    summary_metrics,
)
from automl_clf.report.search import SearchSummary
from automl_clf.search.record import TrialRecord
from automl_clf.train.metrics import EvalResult
from automl_clf.train.trainer import EpochResult

if TYPE_CHECKING:
    from automl_clf.final.audit import AuditResult

N_MISTAKES = 16  # images in the gallery of most confident mistakes
N_EXAMPLES = 16  # classes shown with one correct example each (their heatmaps), in class order


@dataclass(frozen=True)
class DataSummary:
    root: str
    presplit: bool  # the root had train/val/test folders
    counts: dict[str, list[int]]  # split -> images per class, in class order
    skipped: list[tuple[str, str]]  # (path, reason) of every file left out
    fingerprint: str  # sha256 of which file (name and content) is in which split (data/dataset.py)
    n_files: int


@dataclass(frozen=True)
class ShownCluster:
    """One cluster of near-duplicate images, as the report shows it (report/duplicates.py)."""

    files: list[str]  # relative to the data root when inside it; at most MAX_FILES shown
    splits: list[str]  # each file's split before `group` moved any ("" for a dropped copy)
    straddled: bool
    n_files: int  # in the cluster, shown or not
    images: list[np.ndarray | None]  # a thumbnail of each file shown (None: unreadable)


@dataclass(frozen=True)
class NearDuplicateSummary:
    """The data set's near-duplicates (data/near_duplicates.py) for the report."""

    mode: str  # data.near_duplicates: group or warn
    n_clusters: int
    n_files: int
    n_straddled: int  # clusters that straddled splits before any file moved
    n_leaks: int  # pairs of files of one cluster in different splits, before any moved
    n_moved: int
    movable: bool  # autoclf made the split (a given one cannot be regrouped)
    summary: str  # the data phase's one line ("" when nothing straddled)
    shown: list[ShownCluster]  # straddling ones first, capped


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
    weight: float | None = None  # its share of the mixed probability (None: equal shares)


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


@dataclass(frozen=True)
class LearningCurve:
    """One training run's metrics per epoch, epoch 1 first: the exported trial's during the
    search, or its final retrain's. An empty list was not measured (a retrain on train+val has
    no validation split); a None, one epoch's value that was not (a checkpoint of an earlier
    version)."""

    label: str  # what ran, for the legend: "trial #3 (search)", "final retrain (train+val)"
    train_loss: list[float | None]
    train_accuracy: list[float | None]  # over the augmented batches, as they trained
    val_loss: list[float | None]
    val_accuracy: list[float | None]
    best_epoch: int | None = None  # the epoch whose weights were kept

    @classmethod
    def of_trial(cls, trial: FrozenTrial, objective: str) -> LearningCurve:
        """A trial's curves as it recorded them (search/objective.py). A trial of an earlier
        version recorded only its objective per epoch (Optuna's intermediate values): that
        one is drawn when it is the loss or the accuracy."""
        record = TrialRecord.of(trial)
        val_loss: list[float | None] = list(record.val_loss_history or [])
        val_accuracy: list[float | None] = list(record.val_accuracy_history or [])
        reported = [trial.intermediate_values[k] for k in sorted(trial.intermediate_values)]
        if not val_loss and not val_accuracy and objective in ("val_loss", "accuracy"):
            (val_loss if objective == "val_loss" else val_accuracy).extend(reported)
        return cls(
            label=f"trial #{trial.number} (search)",
            train_loss=list(record.train_loss_history or []),
            train_accuracy=list(record.train_accuracy_history or []),
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            best_epoch=record.best_epoch,
        )

    @classmethod
    def of_epochs(cls, label: str, epochs: Sequence[EpochResult]) -> LearningCurve:
        """A run's curves from its epochs (a final retrain's fit history)."""
        return cls(
            label=label,
            train_loss=[e.train_loss for e in epochs],
            train_accuracy=[e.train_accuracy for e in epochs],
            val_loss=[e.val.loss for e in epochs if e.val is not None],
            val_accuracy=[e.val.accuracy for e in epochs if e.val is not None],
        )

    @property
    def n_epochs(self) -> int:
        return max(map(len, (self.train_loss, self.val_loss, self.val_accuracy)))


@dataclass(frozen=True)
class Heatmaps:
    """Where the final model looked in the test images the report shows (`mistakes()` and
    `examples()`): Grad-CAM for the predicted class (final/explain.py)."""

    maps: dict[int, np.ndarray]  # test index -> float32 (H, W) in [0, 1]; empty: none made
    layer: str  # the layer read: a name, or one per ensemble member
    notes: list[str]  # why there are none, or which members were left out


@dataclass(frozen=True)
class AugmentedPreview:
    """Training images beside what the augmentation made of them (report/preview.py)."""

    originals: np.ndarray  # uint8 (N, H, W, C), as decoded
    augmented: np.ndarray  # uint8 (N, H, W, C), as the network saw them (before normalising)
    classes: list[str]  # each image's class
    mixes: list[str]  # each augmented image's caption: "augmented", or its mixed classes
    description: str  # which images, through which augmentation


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
    curves: list[LearningCurve] = field(default_factory=list)  # the trial's, then its retrain's
    augmented: AugmentedPreview | None = None  # None: the final model trained unaugmented
    # model.json's `calibration` (final/calibration.py) as a dict; None: not calibrated. `test`
    # is then calibrated and `test_uncalibrated` the same predictions before the temperature
    calibration: dict[str, Any] | None = None
    test_uncalibrated: EvalResult | None = None
    ood: dict[str, Any] | None = None  # model.json's `ood`, without its quantiles
    min_confidence: float | None = None  # predict's default (final.min_confidence)
    target_accuracy: float = 0.99  # final.target_accuracy
    label_issues: AuditResult | None = None  # the label audit, when `run` ran it
    heatmaps: Heatmaps | None = None  # None: not made (no figures, or the time budget)
    near_duplicates: NearDuplicateSummary | None = None  # None: data.near_duplicates: off
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
            members = self.final.members
            self.metrics["ensemble"] = {
                "members": [member.trial for member in members],
                "averaging": "weighted mean of the members' softmax probabilities",
                "weights": [member.weight for member in members],  # None: equal shares
            }
        self.metrics["seeds"] = seed_spread(self.final)
        self._selective_metrics()

    def _selective_metrics(self) -> None:
        """metrics.json's `temperature_scaling` (ECE and log loss before and after, on the
        test split), `coverage` and `ood`."""
        test, before = self.test, self.test_uncalibrated
        if self.calibration is not None and before is not None:
            bins = calibration_bins(before.probabilities, before.labels)
            self.metrics["temperature_scaling"] = {
                **self.calibration,
                "test_expected_calibration_error_before": expected_calibration_error(bins),
                "test_expected_calibration_error_after": self.metrics[
                    "expected_calibration_error"
                ],
                "test_log_loss_before": before.loss,
                "test_log_loss_after": test.loss,
                "calibration_before": bins,
            }
        self.metrics["coverage"] = coverage_dict(
            test.probabilities, test.labels, self.target_accuracy, self.min_confidence
        )
        if self.ood is not None:
            flagged = test.probabilities.max(axis=1) < self.ood["threshold"]
            share = float(flagged.mean()) if len(flagged) else 0.0
            self.metrics["ood"] = {**self.ood, "test_flagged": share}

    def mistakes(self, n: int = N_MISTAKES) -> list[int]:
        """Indices of wrongly classified test images, the most confident first."""
        predictions = self.test.predictions
        wrong = np.flatnonzero(predictions != self.test.labels)
        confidence = self.test.probabilities.max(axis=1)
        return [int(i) for i in wrong[np.argsort(-confidence[wrong], kind="stable")][:n]]

    def examples(self, n: int = N_EXAMPLES) -> list[int]:
        """One correctly classified test image per class (the most confident), for the first `n`
        classes that have one, in class order."""
        probabilities, labels = self.test.probabilities, self.test.labels
        right = self.test.predictions == labels
        confidence = probabilities.max(axis=1)
        chosen = []
        for label in range(len(self.classes)):
            candidates = np.flatnonzero(right & (labels == label))
            if len(candidates):
                chosen.append(int(candidates[np.argmax(confidence[candidates])]))
            if len(chosen) == n:
                break
        return chosen

    def example_caption(self, index: int) -> str:
        """`7` and its probability, on two lines."""
        probabilities = self.test.probabilities[index]
        predicted = int(probabilities.argmax())
        return f"{self.classes[predicted]}\n({probabilities[predicted]:.2f})"

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
