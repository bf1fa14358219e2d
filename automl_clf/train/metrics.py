"""Classification metrics from predicted probabilities, via scikit-learn."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score


@dataclass(frozen=True)
class EvalResult:
    """Metrics of one pass over a split; `probabilities` rows follow the split's order."""

    loss: float  # mean cross-entropy, unweighted and unsmoothed (comparable across trials)
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    probabilities: np.ndarray  # (N, n_classes), softmax of the logits
    labels: np.ndarray  # (N,) true class indices

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    def metric(self, name: str) -> float:
        """The value of an objective name: val_loss, accuracy, balanced_accuracy or macro_f1."""
        return self.loss if name == "val_loss" else float(getattr(self, name))


def summarise(loss: float, probabilities: np.ndarray, labels: np.ndarray) -> EvalResult:
    predictions = probabilities.argmax(axis=1)
    n_classes = probabilities.shape[1]
    return EvalResult(
        loss=loss,
        accuracy=float(accuracy_score(labels, predictions)),
        balanced_accuracy=float(balanced_accuracy_score(labels, predictions)),
        macro_f1=float(
            f1_score(
                labels, predictions, average="macro", labels=range(n_classes), zero_division=0
            )
        ),
        probabilities=probabilities,
        labels=labels,
    )
