"""Ensemble selection on the validation split (final/selection.py): a member that does not help
gets weight 0, the best trial alone is exported unless a mix beats it, and the guards hold; then
the same end to end, on a real study with a deliberately bad trial."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import automl_clf
from automl_clf.cli import app
from automl_clf.final.selection import Candidate, select_ensemble, validation_scores
from tests.conftest import tiny_spec, write_spec

runner = CliRunner()
N, K = 300, 3
rng = np.random.default_rng(0)
LABELS = rng.integers(0, K, size=N)


def member(correct: np.ndarray, confidence: float, seed: int) -> np.ndarray:
    """Probabilities that put `confidence` on the true class where `correct`, else on another
    class, the rest spread evenly."""
    wrong = (LABELS + np.random.default_rng(seed).integers(1, K, size=N)) % K
    top = np.where(correct, LABELS, wrong)
    probabilities = np.full((N, K), (1 - confidence) / (K - 1))
    probabilities[np.arange(N), top] = confidence
    return probabilities


def test_a_member_that_hurts_gets_weight_zero_and_the_best_is_exported_alone() -> None:
    good = Candidate(0, member(rng.random(N) < 0.95, 0.9, 1))
    bad = Candidate(1, member(rng.random(N) < 0.40, 0.9, 2))  # confident and mostly wrong
    selection = select_ensemble([good, bad], LABELS, objective="val_loss", direction="minimize")
    assert selection.weights == (1.0, 0.0)
    assert not selection.is_ensemble and selection.chosen == [0]
    assert selection.val_ensemble == selection.val_single
    assert "is exported alone" in selection.summary()


def test_members_that_err_apart_are_mixed_and_beat_the_best_alone() -> None:
    first = rng.random(N) < 0.8
    second = ~first | (rng.random(N) < 0.5)  # right where the first is wrong, and more
    a, b = Candidate(4, member(first, 0.8, 3)), Candidate(7, member(second, 0.8, 4))
    selection = select_ensemble([a, b], LABELS, objective="val_loss", direction="minimize")
    assert selection.is_ensemble and all(w > 0 for w in selection.weights)
    assert sum(selection.weights) == pytest.approx(1.0)
    assert selection.val_ensemble["val_loss"] < selection.val_single["val_loss"]
    mix = sum(w * c.val_probabilities for w, c in zip(selection.weights, [a, b], strict=True))
    assert validation_scores(mix, LABELS) == pytest.approx(selection.val_ensemble)
    assert "#4" in selection.summary() and "#7" in selection.summary()


def test_an_accuracy_objective_needs_a_strictly_better_accuracy() -> None:
    """Same answers, other confidences: the mix may lower the log loss but cannot raise the
    accuracy, so the best trial stays alone."""
    correct = rng.random(N) < 0.9
    a, b = Candidate(0, member(correct, 0.6, 5)), Candidate(1, member(correct, 0.99, 5))
    selection = select_ensemble([a, b], LABELS, objective="accuracy", direction="maximize")
    assert selection.chosen == [0]


def test_the_guards_keep_a_member_out() -> None:
    first = rng.random(N) < 0.8
    second = ~first | (rng.random(N) < 0.5)
    a = Candidate(0, member(first, 0.8, 3), latency_ms=2.0, size_mb=1.0)
    b = Candidate(1, member(second, 0.8, 4), latency_ms=3.0, size_mb=1.0)
    free = select_ensemble([a, b], LABELS, objective="val_loss", direction="minimize")
    assert free.is_ensemble
    slow = select_ensemble(
        [a, b], LABELS, objective="val_loss", direction="minimize", max_latency_ms=4.0
    )
    assert slow.chosen == [0] and "final.max_latency_ms 4" in slow.dropped[0]
    big = select_ensemble(
        [a, b], LABELS, objective="val_loss", direction="minimize", max_size_mb=1.5
    )
    assert big.chosen == [0] and "final.max_size_mb" in big.dropped[0]


@pytest.mark.slow
def test_a_real_bad_trial_is_left_out_of_the_export(tmp_path: Path, digits_root: Path) -> None:
    """Trial 1 trains at a learning rate of 1e-6: it learns nothing, so with final.ensemble 3
    the selection gives it weight 0 and the export does not carry it."""
    raw = tiny_spec(
        digits_root,
        tmp_path,
        study={"n_trials": 3, "pruner": "none", "warm_start": [{"train.lr": 1.0e-6}]},
        train={"epochs": 4, "lr": {"low": 1.0e-6, "high": 1.0e-2, "log": True}},
        final={"ensemble": 3, "retrain": "never"},
    )
    spec = write_spec(tmp_path / "spec.yaml", raw)
    assert runner.invoke(app, ["search", str(spec)]).exit_code == 0
    out = tmp_path / "export"
    result = runner.invoke(app, ["best", str(spec), "--export", str(out)])
    assert result.exit_code == 0, result.output
    assert "ensemble selection on the validation split" in " ".join(result.output.split())
    manifest = json.loads((out / "model.json").read_text())
    selection = manifest["selection"]
    weights = dict(zip(selection["trials"], selection["weights"], strict=True))
    assert weights[1] == 0.0  # the trial that learnt nothing
    assert 1 not in [m["trial"] for m in manifest["members"]]
    assert manifest["trial"] == selection["trials"][0]  # the best trial stays member 0
    single, mixed = selection["val_single"]["val_loss"], selection["val_ensemble"]["val_loss"]
    assert mixed <= single  # never a worse export on validation
    if manifest["members"]:  # a mix beat the best alone: the export weighs its members so
        shares = [m["weight"] for m in manifest["members"]]
        assert sum(shares) == pytest.approx(1.0) and all(w > 0 for w in shares)
    assert automl_clf.load(out).classes_
