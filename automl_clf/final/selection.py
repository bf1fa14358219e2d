"""Which trials make the final model, and with what weights: greedy ensemble selection on the
validation split (Caruana et al. 2004, "Ensemble selection from libraries of models"; as
AutoGluon's `EnsembleSelection` and auto-sklearn's ensemble builder do it).

Averaging the top K trials blindly can make the model worse than its best member: a member cut
after one epoch beside a good one doubles the log loss and halves a confident answer. So the
members are chosen on what the trials predicted for the validation split (their best epoch's
probabilities, kept by the search, train/weights.py):

1. Start from the best single trial (the one a K=1 export would use).
2. Each round, add the candidate (with replacement: the same trial again raises its weight) whose
   addition gives the best validation objective of the weighted mean of probabilities.
3. After `ROUNDS` rounds keep the prefix with the best objective; a trial's weight is how often it
   was picked. A trial never picked has weight 0 and is not exported.

The ensemble is kept only when it beats the best single trial on the study's objective
(strictly); otherwise the single trial is exported. Ties within a round are broken by log loss,
then by rank, so an accuracy objective still prefers the better-calibrated mix. Optional budgets
(`final.max_latency_ms`, `final.max_size_mb`) are sums over the distinct members, and a
candidate that would break one is not added.

Pure NumPy over arrays: the weights are fitted without a model in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from automl_clf.train.metrics import summarise

ROUNDS = 25  # AutoGluon's default ensemble_size is 25 for its weighted ensemble of few models
_EPS = 1e-15  # log(0) guard, as scikit-learn's log_loss clips
_TOL = 1e-9  # "better" means by more than float rounding (a trial mixed with itself is itself)


@dataclass(frozen=True)
class Candidate:
    """One trial that may join the ensemble: its validation probabilities and its costs."""

    trial: int  # the trial's number (for messages and the report)
    val_probabilities: np.ndarray  # (N, n_classes), rows in the validation split's order
    latency_ms: float | None = None  # batch 1 on the CPU, as the trial measured it
    size_mb: float | None = None  # its weights file


@dataclass(frozen=True)
class Selection:
    """The chosen mix: `weights[i]` for candidate i (summing to 1), and the validation numbers
    the choice was made on."""

    trials: tuple[int, ...]  # the candidates' trial numbers, in candidate order
    weights: tuple[float, ...]
    objective: str  # the study's objective, e.g. val_loss
    val_single: dict[str, float]  # the best single trial on validation
    val_ensemble: dict[str, float]  # the chosen mix on validation (== single when it is alone)
    rounds: int  # rounds run
    dropped: tuple[str, ...] = ()  # why a candidate never joined (guards), for the report

    @property
    def chosen(self) -> list[int]:
        """Indices of the candidates with a weight above 0, best first (candidate order)."""
        return [i for i, w in enumerate(self.weights) if w > 0]

    @property
    def is_ensemble(self) -> bool:
        return len(self.chosen) > 1

    def summary(self) -> str:
        """One line for the terminal and the report: what was chosen, on which numbers."""
        name, single, mixed = self.objective, self.val_single, self.val_ensemble
        best = f"trial #{self.trials[0]}"
        left = [f"#{t}" for t, w in zip(self.trials, self.weights, strict=True) if w == 0]
        unused = f"; weight 0 (left out): {', '.join(left)}" if left else ""
        if not self.is_ensemble:
            return (
                f"ensemble selection on the validation split: no mix of trials "
                f"{', '.join(f'#{t}' for t in self.trials)} beat {best} alone on {name} "
                f"({single[name]:.4g}), so {best} is exported alone"
            )
        weights = ", ".join(
            f"#{t} {w:.2f}" for t, w in zip(self.trials, self.weights, strict=True) if w > 0
        )
        return (
            f"ensemble selection on the validation split: weights {weights}{unused}; {name} "
            f"{mixed[name]:.4g} against {single[name]:.4g} for {best} alone"
        )


def validation_scores(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The objectives a study can rank by, from probabilities: `val_loss` is the mean
    cross-entropy (unweighted, unsmoothed, as the trainer reports it)."""
    picked = probabilities[np.arange(len(labels)), labels]
    loss = float(-np.mean(np.log(np.clip(picked, _EPS, 1.0))))
    result = summarise(loss, probabilities, labels)
    return {
        "val_loss": result.loss,
        "accuracy": result.accuracy,
        "balanced_accuracy": result.balanced_accuracy,
        "macro_f1": result.macro_f1,
    }


def select_ensemble(
    candidates: Sequence[Candidate],
    labels: np.ndarray,
    *,
    objective: str,
    direction: str,
    rounds: int = ROUNDS,
    max_latency_ms: float | None = None,
    max_size_mb: float | None = None,
) -> Selection:
    """Greedy forward selection with replacement over `candidates` (best first); see the
    module docstring.

    Args:
        objective: the study's validation objective (val_loss, accuracy, balanced_accuracy,
            macro_f1).
        direction: "minimize" or "maximize".
        max_latency_ms, max_size_mb: budgets over the distinct members chosen (None: none).
    """
    if not candidates:
        raise ValueError("ensemble selection needs at least one candidate")
    sign = 1.0 if direction == "minimize" else -1.0

    def key(scores: dict[str, float]) -> tuple[float, float]:
        return (sign * scores[objective], scores["val_loss"])

    n = len(candidates)
    counts = np.zeros(n, dtype=np.int64)
    counts[0] = 1
    total = candidates[0].val_probabilities.astype(np.float64)
    single = validation_scores(total, labels)
    best_counts, best_scores = counts.copy(), single
    dropped: dict[int, str] = {}
    for step in range(1, rounds):
        trials = []
        for i, candidate in enumerate(candidates):
            problem = _breaks_guard(candidates, counts, i, max_latency_ms, max_size_mb)
            if problem is not None:
                dropped.setdefault(i, problem)
                continue
            mix = (total + candidate.val_probabilities) / (step + 1)
            trials.append((key(validation_scores(mix, labels)), i))
        if not trials:
            break
        _, pick = min(trials)  # ties: the lower log loss, then the better-ranked candidate
        counts[pick] += 1
        total = total + candidates[pick].val_probabilities
        scores = validation_scores(total / (step + 1), labels)
        better = sign * (single[objective] - scores[objective]) > _TOL
        if better and key(scores) < key(best_scores):
            best_counts, best_scores = counts.copy(), scores
    weights = tuple(float(c) / best_counts.sum() for c in best_counts)
    return Selection(
        trials=tuple(c.trial for c in candidates),
        weights=weights,
        objective=objective,
        val_single=single,
        val_ensemble=best_scores,
        rounds=rounds,
        dropped=tuple(
            f"trial #{candidates[i].trial}: {why}"
            for i, why in sorted(dropped.items())
            if best_counts[i] == 0
        ),
    )


def _breaks_guard(
    candidates: Sequence[Candidate],
    counts: np.ndarray,
    i: int,
    max_latency_ms: float | None,
    max_size_mb: float | None,
) -> str | None:
    """Why adding candidate `i` would break a budget over the distinct members, or None."""
    members = {j for j, c in enumerate(counts) if c > 0} | {i}
    for limit, unit, name, cost in (
        (max_latency_ms, "ms", "final.max_latency_ms", lambda c: c.latency_ms),
        (max_size_mb, "MB", "final.max_size_mb", lambda c: c.size_mb),
    ):
        if limit is None:
            continue
        costs = [cost(candidates[j]) for j in members]
        if any(value is None for value in costs):
            return f"its {unit} cost is unknown, so {name} {limit:g} cannot be checked"
        total = float(sum(value for value in costs if value is not None))
        if total > limit:
            return f"the ensemble would take {total:.3g} {unit}, over {name} {limit:g}"
    return None
