"""Selective prediction on the test split (report/metrics.py): accuracy against coverage, and the
confidence threshold that reaches a target accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from automl_clf.report.metrics import (
    accuracy_at_coverage,
    accuracy_coverage,
    answered_at,
    coverage_dict,
    threshold_for_accuracy,
)


def predictions(confidences: list[float], right: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Two-class probabilities whose top probability is each confidence, predicting class 0;
    the label is 0 where `right`, else 1."""
    top = np.asarray(confidences)
    probabilities = np.stack([top, 1 - top], axis=1)
    return probabilities, np.where(right, 0, 1)


def test_the_surest_images_are_answered_first() -> None:
    probabilities, labels = predictions(
        [0.6, 0.99, 0.7, 0.95, 0.8], [False, True, True, True, False]
    )
    coverage, accuracy, threshold = accuracy_coverage(probabilities, labels)
    assert coverage.tolist() == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert accuracy.tolist() == pytest.approx([1.0, 1.0, 2 / 3, 3 / 4, 3 / 5])
    assert threshold.tolist() == [0.99, 0.95, 0.8, 0.7, 0.6]
    assert accuracy_at_coverage(probabilities, labels, 0.4) == 1.0
    assert accuracy_at_coverage(probabilities, labels, 0.5) == pytest.approx(2 / 3)  # 3 of 5
    assert accuracy_at_coverage(probabilities, labels, 1.0) == pytest.approx(0.6)
    with pytest.raises(ValueError, match=r"coverage must be in \(0, 1\], got 0"):
        accuracy_at_coverage(probabilities, labels, 0.0)


def test_the_threshold_for_a_target_answers_the_most_images_and_never_splits_a_tie() -> None:
    probabilities, labels = predictions(
        [0.99, 0.9, 0.9, 0.8, 0.7], [True, True, False, True, True]
    )
    reached = threshold_for_accuracy(probabilities, labels, 0.75)
    assert reached is not None  # 0.7 answers all five: 4/5 right
    assert (reached.threshold, reached.coverage, reached.accuracy) == (0.7, 1.0, 0.8)
    strict = threshold_for_accuracy(probabilities, labels, 0.99)
    assert strict is not None  # 0.9 would answer both 0.9s, one wrong: only 0.99 is left
    assert (strict.threshold, strict.coverage, strict.accuracy) == (0.99, 0.2, 1.0)
    wrong_first, labels = predictions([0.99, 0.5], [False, True])
    assert threshold_for_accuracy(wrong_first, labels, 0.9) is None


def test_min_confidence_answers_the_images_at_or_above_it() -> None:
    probabilities, labels = predictions([0.99, 0.9, 0.6, 0.5], [True, True, False, False])
    answered = answered_at(probabilities, labels, 0.9)
    assert (answered.coverage, answered.accuracy) == (0.5, 1.0)
    metrics = coverage_dict(probabilities, labels, 0.99, 0.9)
    assert metrics["min_confidence"] == {"threshold": 0.9, "coverage": 0.5, "accuracy": 1.0}
    assert metrics["target"] == {"threshold": 0.9, "coverage": 0.5, "accuracy": 1.0}
    assert [row["coverage"] for row in metrics["at"]] == [0.8, 0.9, 0.95, 0.99]
    assert metrics["curve"]["coverage"] == [0.25, 0.5, 0.75, 1.0]
