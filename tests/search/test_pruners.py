"""Every pruner, on a real search with a deliberately bad region (a learning rate far too small):
the bad trial is PRUNED early, with its epochs on record; with `none`, nothing is."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest
from optuna.study import StudyDirection
from optuna.trial import TrialState

from automl_clf.search import run_search
from automl_clf.spec import load_spec
from automl_clf.spec.pruners import PRUNERS
from tests.conftest import tiny_spec, write_spec

EPOCHS = 4
SETTINGS: dict[str, dict[str, Any]] = {
    "median": {"n_startup_trials": 2, "n_warmup_steps": 1},
    "percentile": {"percentile": 50.0, "n_startup_trials": 2, "n_warmup_steps": 1},
    "successive_halving": {"min_resource": 1, "reduction_factor": 2},
    # Hyperband puts each trial in a bracket by a hash of the study name and trial number; with
    # these settings, study "tiny"'s bad trial #4 shares its bracket with good trials #1 and #3.
    "hyperband": {"min_resource": 1, "reduction_factor": 3},
    "none": {},
}


def test_the_table_covers_every_pruner() -> None:
    assert set(SETTINGS) == set(PRUNERS.kinds)


@pytest.mark.parametrize("kind", PRUNERS.kinds)
def test_pruning_stops_the_bad_region_early_and_none_never_prunes(
    tmp_path: Path, digits_root: Path, kind: str
) -> None:
    good = [{"train.lr": 0.02, "augment.policy": "none"}] * 4
    bad = {"train.lr": 1e-6, "augment.policy": "none"}  # learns nothing in 4 epochs
    raw = tiny_spec(
        digits_root,
        tmp_path,
        study={
            "n_trials": 5,
            "pruner": {"kind": kind, **SETTINGS[kind]},
            "try_defaults": False,
            "warm_start": [*good, bad],
        },
        train={"epochs": EPOCHS, "lr": {"low": 1e-6, "high": 0.03, "log": True}},
    )
    result = run_search(load_spec(write_spec(tmp_path / "spec.yaml", raw)))
    assert result.n_finished == 5
    trials = result.study.trials
    assert trials[4].params["train.lr"] == pytest.approx(1e-6)  # the warm start's order
    if kind == "none":
        assert all(t.state == TrialState.COMPLETE for t in trials)
        assert all(len(t.intermediate_values) == EPOCHS for t in trials)
        return
    pruned = trials[4]
    assert pruned.state == TrialState.PRUNED, [t.state.name for t in trials]
    assert "fail_reason" not in pruned.user_attrs  # pruned for being weak, not for failing
    assert pruned.user_attrs["epochs_run"] < EPOCHS  # compute saved
    assert len(pruned.intermediate_values) == pruned.user_attrs["epochs_run"]


@pytest.mark.parametrize("metric", ["macro_f1", "balanced_accuracy"])
def test_a_maximised_metric_prunes_the_low_trial_and_picks_the_highest(
    tmp_path: Path, digits_root: Path, metric: str
) -> None:
    """Pruning on a metric to maximise: a pruner comparing the wrong way would prune the good
    trials (above the median) and keep the bad one."""
    good = [{"train.lr": 0.02, "augment.policy": "none"}] * 4
    bad = {"train.lr": 1e-6, "augment.policy": "none"}
    raw = tiny_spec(
        digits_root,
        tmp_path,
        study={
            "objective": metric,
            "n_trials": 5,
            "pruner": {"kind": "median", **SETTINGS["median"]},
            "try_defaults": False,
            "warm_start": [*good, bad],
        },
        train={"epochs": EPOCHS, "lr": {"low": 1e-6, "high": 0.03, "log": True}},
    )
    study = run_search(load_spec(write_spec(tmp_path / "spec.yaml", raw))).study
    assert study.direction == StudyDirection.MAXIMIZE
    *kept, pruned = study.trials
    assert [t.state for t in kept] == [TrialState.COMPLETE] * 4
    assert pruned.state == TrialState.PRUNED
    step = max(pruned.intermediate_values)
    assert step < EPOCHS
    others = [t.intermediate_values[step] for t in kept]
    assert pruned.intermediate_values[step] < statistics.median(others)  # below: pruned
    for trial in kept:  # each trial's value is its best epoch's metric, to maximise
        assert trial.value == pytest.approx(trial.user_attrs[f"val_{metric}"])
    assert study.best_trial.value == max(t.value for t in kept)
    assert study.best_trial.number == max(kept, key=lambda t: t.value).number
