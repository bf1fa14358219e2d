"""Test-split metrics as the export contract's `metrics.json`."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from automl_clf.train.metrics import EvalResult


def metrics_dict(result: EvalResult, classes: list[str]) -> dict[str, Any]:
    """accuracy, balanced_accuracy, macro_f1, log loss, the confusion matrix (rows = true class,
    columns = predicted) and per-class precision/recall/F1/support."""
    labels = list(range(len(classes)))
    predictions = result.predictions
    precision, recall, f1, support = precision_recall_fscore_support(
        result.labels, predictions, labels=labels, zero_division=0
    )
    matrix = confusion_matrix(result.labels, predictions, labels=labels)
    return {
        "n_images": len(result.labels),
        "accuracy": result.accuracy,
        "balanced_accuracy": result.balanced_accuracy,
        "macro_f1": result.macro_f1,
        "log_loss": result.loss,
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


def confusion(metrics: dict[str, Any]) -> np.ndarray:
    return np.asarray(metrics["confusion_matrix"], dtype=np.int64)
