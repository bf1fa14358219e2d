"""Every sampler: a real search with it completes, its trials stay in the space and train what they
sampled, it is seeded per trial, and the grid visits each configuration of a conditional space
exactly once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from automl_clf.search import run_search
from automl_clf.search.samplers import build_sampler
from automl_clf.spec import load_spec, parse_spec, resolve
from automl_clf.spec.describe import describe_space, grid_points
from automl_clf.spec.models import SAMPLER_KINDS
from tests.conftest import tiny_spec, write_spec

MULTI_OBJECTIVE = {"objective": ["accuracy", "n_params"], "pruner": {"kind": "none"}}


def sampler_spec(root: Path, folder: Path, kind: str, **study: Any) -> dict[str, Any]:
    """The tiny spec with a finite space for grid, two objectives for nsga2."""
    extra = MULTI_OBJECTIVE if kind == "nsga2" else {}
    spec = tiny_spec(root, folder, study={"sampler": kind, **extra, **study}, train={"epochs": 2})
    if kind == "grid":
        spec["model"]["dropout"] = {"low": 0.0, "high": 0.2, "step": 0.1}
        spec["train"]["lr"] = {"choices": [0.003, 0.01]}
    return spec


@pytest.mark.parametrize("kind", SAMPLER_KINDS)
def test_each_sampler_runs_a_search_that_trains_what_it_sampled(
    tmp_path: Path, digits_root: Path, kind: str
) -> None:
    raw = sampler_spec(digits_root, tmp_path, kind, n_trials=2)
    spec = load_spec(write_spec(tmp_path / "spec.yaml", raw))
    result = run_search(spec)
    assert result.complete and result.n_finished == 2
    ran = [t for t in result.study.trials if t.state != TrialState.WAITING]
    assert len(ran) == 2  # a grid queues all its points; the rest wait for a larger n_trials
    for trial in ran:
        assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        config = trial.user_attrs["config"]
        assert config["model"]["dropout"] == pytest.approx(trial.params["model.dropout"])
        assert config["train"]["lr"] == pytest.approx(trial.params["train.lr"])
        assert str(config["model"]["cnn"]["filters"]).replace(" ", "") == trial.params[
            "model.cnn.filters"
        ].replace(" ", "")
        assert config["augment"]["policy"] == trial.params["augment.policy"]
    if kind == "nsga2":
        assert all(len(t.values) == 2 for t in ran)


def ask_params(spec_raw: dict[str, Any], folder: Path, n: int, name: str) -> list[dict[str, Any]]:
    """The params a sampler proposes for `n` trials of a fresh SQLite study (values told are a
    fixed function of the params, so two runs see the same history)."""
    spec = parse_spec(spec_raw, base_dir=folder)
    storage = f"sqlite:///{folder / name}.db"
    directions = spec.study.directions
    study = optuna.create_study(
        storage=storage, directions=directions, sampler=build_sampler(spec), study_name=name
    )
    proposed = []
    for _ in range(n):
        trial = study.ask()
        resolve(spec, trial)
        value = trial.params["train.lr"] + trial.params["model.dropout"]
        study.tell(trial, [value] * len(directions))
        proposed.append(trial.params)
    return proposed


@pytest.mark.parametrize("kind", [k for k in SAMPLER_KINDS if k != "grid"])
def test_each_sampler_is_seeded_per_trial(tmp_path: Path, digits_root: Path, kind: str) -> None:
    raw = sampler_spec(digits_root, tmp_path, kind, seed=7)
    first = ask_params(raw, tmp_path, 4, "a")
    assert ask_params(raw, tmp_path, 4, "b") == first  # the same seed: the same trials
    raw["study"]["seed"] = 8
    assert ask_params(raw, tmp_path, 4, "c") != first
    lrs = [p["train.lr"] for p in first]
    assert len(set(lrs)) == len(lrs)  # trial n draws from seed + n: no repeats


def test_grid_visits_every_configuration_of_a_conditional_space_once(
    tmp_path: Path, digits_root: Path
) -> None:
    raw = sampler_spec(digits_root, tmp_path, "grid", n_trials=100)
    raw["model"]["backbone"] = {"choices": ["cnn", "test_resnet"]}
    raw["model"]["dropout"] = 0.1
    raw["augment"]["policy"] = "none"
    raw["train"]["lr"] = 0.01
    raw["train"]["epochs"] = 1
    spec_file = write_spec(tmp_path / "spec.yaml", raw)
    spec = load_spec(spec_file)
    points = grid_points(spec)
    # cnn: 2 filter choices; test_resnet has no filters: 1. No duplicates from the filters of a
    # backbone that does not use them.
    assert len(points) == describe_space(spec).size == 3
    result = run_search(spec)
    assert result.target == 3 and result.n_finished == 3  # capped at the grid's size
    seen = sorted(str(sorted(t.params.items())) for t in result.study.trials)
    assert seen == sorted(str(sorted(p.items())) for p in points)
