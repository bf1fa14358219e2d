"""Test-split metrics as the export contract's `metrics.json`.

Besides the usual ones: calibration (equal-width confidence bins, the expected calibration error
over them) and selective prediction, answering only the images the model is surest of: the
accuracy–coverage curve (the k most confident of N test images answered, k = 1..N), the
accuracy at a coverage, and the lowest confidence threshold whose answered images reach a target
accuracy. These are plain functions of probabilities and labels, so a benchmark can call them on
any model's predictions (`ece`, `accuracy_at_coverage`, `threshold_for_accuracy`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from automl_clf.train.metrics import EvalResult

TOP_K = (1, 2, 3, 5)  # top-k accuracies reported, for each k below the number of classes
N_CALIBRATION_BINS = 15  # equal-width confidence bins of the reliability diagram and ECE
COVERAGES = (0.8, 0.9, 0.95, 0.99)  # shares of test images answered, tabled in the report
CURVE_POINTS = 200  # at most this many points of the accuracy–coverage curve in metrics.json


def metrics_dict(result: EvalResult, classes: list[str]) -> dict[str, Any]:
    """accuracy, balanced_accuracy, macro_f1, log loss, top-k accuracy, the expected calibration
    error with its bins, the confusion matrix (rows = true class, columns = predicted) and
    per-class precision/recall/F1/support."""
    labels = list(range(len(classes)))
    predictions = result.predictions
    precision, recall, f1, support = precision_recall_fscore_support(
        result.labels, predictions, labels=labels, zero_division=0
    )
    matrix = confusion_matrix(result.labels, predictions, labels=labels)
    bins = calibration_bins(result.probabilities, result.labels)
    return {
        "n_images": len(result.labels),
        "accuracy": result.accuracy,
        "balanced_accuracy": result.balanced_accuracy,
        "macro_f1": result.macro_f1,
        "log_loss": result.loss,
        "top_k_accuracy": top_k_accuracy(result.probabilities, result.labels),
        "expected_calibration_error": expected_calibration_error(bins),
        "calibration": bins,
        "classes": classes,
        "confusion_matrix": matrix.tolist(),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
    }


def summary_metrics(result: EvalResult) -> dict[str, float]:
    """The headline numbers of one evaluation (used beside the plain result: TTA, seeds)."""
    return {
        "accuracy": result.accuracy,
        "balanced_accuracy": result.balanced_accuracy,
        "macro_f1": result.macro_f1,
        "log_loss": result.loss,
    }


def top_k_accuracy(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Share of images whose true class is among the k most probable, for k in TOP_K below the
    number of classes (k = n_classes would be 1 by definition)."""
    n_classes = probabilities.shape[1]
    ranks = np.argsort(-probabilities, axis=1, kind="stable")
    hits = ranks == labels[:, None]
    return {
        str(k): float(hits[:, :k].any(axis=1).mean()) if len(labels) else 0.0
        for k in TOP_K
        if k < n_classes
    }


def calibration_bins(
    probabilities: np.ndarray, labels: np.ndarray, n_bins: int = N_CALIBRATION_BINS
) -> list[dict[str, float]]:
    """Equal-width bins of the top probability: count, mean confidence and accuracy in each.

    A calibrated model's accuracy in each bin equals its mean confidence there.
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        inside = index == b
        n = int(inside.sum())
        bins.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "n": n,
                "confidence": float(confidence[inside].mean()) if n else 0.0,
                "accuracy": float(correct[inside].mean()) if n else 0.0,
            }
        )
    return bins


def expected_calibration_error(bins: list[dict[str, float]]) -> float:
    """The count-weighted mean gap |accuracy − confidence| over the bins (0 = calibrated)."""
    total = sum(b["n"] for b in bins)
    if total == 0:
        return 0.0
    return float(sum(b["n"] * abs(b["accuracy"] - b["confidence"]) for b in bins) / total)


def ece(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = N_CALIBRATION_BINS) -> float:
    """The expected calibration error of probabilities (N, C) for labels (N,), as the report
    computes it."""
    return expected_calibration_error(calibration_bins(probabilities, labels, n_bins))


def accuracy_coverage(
    probabilities: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Answering only the k most confident images (top probability, ties in their order), for
    k = 1..N: the coverage k / N, the accuracy of those k, and the k-th's confidence (the
    threshold that answers them)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    order = np.argsort(-confidence, kind="stable")
    k = np.arange(1, len(labels) + 1)
    return k / max(len(labels), 1), np.cumsum(correct[order]) / k, confidence[order]


def accuracy_at_coverage(probabilities: np.ndarray, labels: np.ndarray, coverage: float) -> float:
    """The accuracy on the ceil(coverage · N) most confident images (0 < coverage <= 1): what
    answering that share of the images, the surest first, gets right."""
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    if len(labels) == 0:
        return 0.0
    _, accuracy, _ = accuracy_coverage(probabilities, labels)
    k = max(1, math.ceil(coverage * len(labels) - 1e-9))
    return float(accuracy[k - 1])


@dataclass(frozen=True)
class Selective:
    """The images answered at one confidence threshold: those with top probability >= it."""

    threshold: float
    coverage: float  # their share of the images
    accuracy: float  # their accuracy


def threshold_for_accuracy(
    probabilities: np.ndarray, labels: np.ndarray, target: float
) -> Selective | None:
    """The lowest confidence threshold whose answered images (top probability >= it) are at
    least `target` accurate, so the most images answered at that accuracy; None when even the
    surest images alone miss it."""
    coverage, accuracy, confidence = accuracy_coverage(probabilities, labels)
    # a threshold answers every image of its confidence: only the ends of ties are choices
    ends = np.append(confidence[1:] < confidence[:-1], True) if len(labels) else np.array([])
    reached = np.flatnonzero(ends & (accuracy >= target - 1e-12))
    if not len(reached):
        return None
    k = int(reached[-1])
    return Selective(float(confidence[k]), float(coverage[k]), float(accuracy[k]))


def answered_at(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> Selective:
    """The share and accuracy of the images whose top probability is at least `threshold`
    (what `predict --min-confidence` answers; the rest are `unsure`)."""
    confidence = probabilities.max(axis=1)
    kept = confidence >= threshold
    correct = probabilities.argmax(axis=1) == labels
    accuracy = float(correct[kept].mean()) if kept.any() else 0.0
    return Selective(threshold, float(kept.mean()) if len(labels) else 0.0, accuracy)


def coverage_dict(
    probabilities: np.ndarray,
    labels: np.ndarray,
    target_accuracy: float,
    min_confidence: float | None,
) -> dict[str, Any]:
    """metrics.json `coverage`: accuracy at COVERAGES, the threshold reaching the target
    accuracy (null when none does), the export's minimum confidence, and the curve (at most
    CURVE_POINTS points)."""
    coverage, accuracy, confidence = accuracy_coverage(probabilities, labels)
    n = len(labels)
    at = []
    for share in COVERAGES:
        k = max(1, math.ceil(share * n - 1e-9)) if n else 0
        if k:
            at.append(
                {
                    "coverage": share,
                    "accuracy": float(accuracy[k - 1]),
                    "threshold": float(confidence[k - 1]),
                }
            )
    reached = threshold_for_accuracy(probabilities, labels, target_accuracy)
    picks = np.unique(np.linspace(0, n - 1, min(n, CURVE_POINTS)).round().astype(int))
    answered = None
    if min_confidence is not None:
        answered = asdict(answered_at(probabilities, labels, min_confidence))
    return {
        "target_accuracy": target_accuracy,
        "target": None if reached is None else asdict(reached),
        "at": at,
        "min_confidence": answered,
        "curve": {
            "coverage": [float(coverage[i]) for i in picks],
            "accuracy": [float(accuracy[i]) for i in picks],
            "threshold": [float(confidence[i]) for i in picks],
        },
    }


def confusion(metrics: dict[str, Any]) -> np.ndarray:
    return np.asarray(metrics["confusion_matrix"], dtype=np.int64)
