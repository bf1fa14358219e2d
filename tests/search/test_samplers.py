"""Every sampler: a real search with it completes, its trials stay in the space and train what they
sampled, it is seeded per trial, and the grid visits each configuration of a conditional space
exactly once."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from automl_clf.models.factory import build_model, count_parameters
from automl_clf.search import run_search
from automl_clf.search.samplers import SeedPerTrial, build_sampler
from automl_clf.spec import Spec, load_spec, parse_spec, resolve
from automl_clf.spec.config import TrialConfig
from automl_clf.spec.describe import describe_space, grid_points
from automl_clf.spec.samplers import SAMPLERS
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


# Per sampler: its settings in the spec, the sampler Optuna runs with them (class and the
# attributes that hold those settings), and after how many finished trials its own model
# proposes (None: a grid's points are all queued). Trial 0 tries the defaults.
EXPECTED: dict[str, tuple[dict[str, Any], type, dict[str, Any], int | None]] = {
    "tpe": (
        {"n_startup_trials": 2},
        optuna.samplers.TPESampler,
        {"_n_startup_trials": 2, "_multivariate": True, "_group": True, "_constant_liar": True},
        2,
    ),
    "random": ({}, optuna.samplers.RandomSampler, {}, sys.maxsize),
    "cmaes": (
        {"n_startup_trials": 1},
        optuna.samplers.CmaEsSampler,
        {"_n_startup_trials": 1},
        1,
    ),
    "gp": ({"n_startup_trials": 2}, optuna.samplers.GPSampler, {"_n_startup_trials": 2}, 2),
    "qmc": (
        {"qmc_type": "halton", "scramble": False},
        optuna.samplers.QMCSampler,
        {"_qmc_type": "halton", "_scramble": False},
        0,
    ),
    "grid": ({}, optuna.samplers.RandomSampler, {}, None),  # its points are queued up front
    # NSGA-II's first generation counts only trials it drew: not the queued defaults.
    "nsga2": ({"population_size": 2}, optuna.samplers.NSGAIISampler, {"population_size": 2}, 3),
}


def test_the_table_covers_every_sampler() -> None:
    assert set(EXPECTED) == set(SAMPLERS.kinds)


def random_proposal(spec: Spec, seed: int) -> dict[str, Any]:
    """The params a RandomSampler seeded like trial n (`seed + n`) proposes for this space."""
    study = optuna.create_study(
        directions=spec.study.directions, sampler=optuna.samplers.RandomSampler(seed=seed)
    )
    trial = study.ask()
    resolve(spec, trial)
    return trial.params


@pytest.mark.parametrize("kind", SAMPLERS.kinds)
def test_each_sampler_runs_a_search_that_trains_what_it_sampled(
    tmp_path: Path, digits_root: Path, kind: str
) -> None:
    settings, expected_class, attributes, model_from = EXPECTED[kind]
    n_trials = 2 if model_from in (None, 0, sys.maxsize) else model_from + 1  # just past it
    raw = sampler_spec(
        digits_root, tmp_path, kind, n_trials=n_trials, sampler={"kind": kind, **settings}
    )
    raw["train"] |= {"epochs": 1, "schedule": "constant"}  # each epoch runs at the sampled lr
    spec = load_spec(write_spec(tmp_path / "spec.yaml", raw))
    built = build_sampler(spec)
    assert isinstance(built, SeedPerTrial) and type(built.inner) is expected_class
    for name, value in attributes.items():
        assert getattr(built.inner, name) == value, name
    result = run_search(spec)
    assert result.complete and result.n_finished == n_trials
    ran = [t for t in result.study.trials if t.state != TrialState.WAITING]
    assert (
        len(ran) == n_trials
    )  # a grid queues all its points; the rest wait for a larger n_trials
    for trial in ran:
        assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        config = TrialConfig.model_validate(trial.user_attrs["config"])
        assert config.model.dropout == pytest.approx(trial.params["model.dropout"])
        assert config.train.lr == pytest.approx(trial.params["train.lr"])
        assert config.model.cnn is not None
        assert list(config.model.cnn.filters) == json.loads(trial.params["model.cnn.filters"])
        assert config.augment.policy == trial.params["augment.policy"]
        # What the trainer ran: its optimizer at the sampled lr, a model of the sampled filters.
        assert trial.user_attrs["lr_history"] == pytest.approx([trial.params["train.lr"]])
        model = build_model(config.model, n_classes=3, in_chans=1, image_size=8)
        assert trial.user_attrs["n_params"] == count_parameters(model)
        if model_from is None or "fixed_params" in trial.system_attrs:
            continue  # queued (the defaults, a grid point): no sampler proposed it
        # Before its model starts, a sampler draws what a random sampler seeded alike draws;
        # from then on (past the start-up trials, the first generation) its own model proposes.
        random = random_proposal(spec, spec.study.seed + trial.number)
        by_model = trial.number >= model_from
        assert (trial.params != random) == by_model, (trial.number, trial.params, random)
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


@pytest.mark.parametrize("kind", [k for k in SAMPLERS.kinds if k != "grid"])
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


def test_search_warns_when_its_sampler_would_never_leave_the_random_start_up(
    spec_file: Path,
) -> None:
    from typer.testing import CliRunner

    from automl_clf.cli import app

    result = CliRunner().invoke(app, ["search", str(spec_file), "--n-trials", "1"])
    assert result.exit_code == 0, result.output
    assert (  # the budget of this command (--n-trials), tpe's default start-up
        "warning: study.sampler.n_startup_trials is 10, but n_trials is 1: every trial is "
        "drawn at random and tpe never proposes one" in " ".join(result.output.split())
    )


@pytest.mark.parametrize(
    ("n_finished", "target", "warned"),
    [(4, None, True), (5, None, True), (6, None, False), (4, 3, False), (4, 20, True)],
)
def test_after_a_search_that_never_left_the_random_start_up_it_says_so(
    tmp_path: Path, digits_root: Path, n_finished: int, target: int | None, warned: bool
) -> None:
    """A time budget (target None) or a timeout short of n_trials can end a tpe search inside
    its 5 random start-up trials; a target at or below the start-up was warned about before."""
    from automl_clf.search.samplers import random_start_warnings

    raw = tiny_spec(
        digits_root, tmp_path, study={"sampler": {"kind": "tpe", "n_startup_trials": 5}}
    )
    spec = parse_spec(raw, base_dir=tmp_path)
    lines = random_start_warnings(spec, n_finished, target)
    assert bool(lines) is warned
    if warned:
        assert f"all {n_finished} finished trial(s) were drawn at random" in lines[0]
        assert "study.sampler.n_startup_trials (5)" in lines[0]
