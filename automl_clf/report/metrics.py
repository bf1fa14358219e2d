"""Test-split metrics as the export contract's `metrics.json`."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from automl_clf.train.metrics import EvalResult

TOP_K = (1, 2, 3, 5)  # top-k accuracies reported, for each k below the number of classes
N_CALIBRATION_BINS = 15  # equal-width confidence bins of the reliability diagram and ECE


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


def confusion(metrics: dict[str, Any]) -> np.ndarray:
    return np.asarray(metrics["confusion_matrix"], dtype=np.int64)
