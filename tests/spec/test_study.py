"""The study section of a spec: samplers, pruners, objectives, constraints, warm start. Bad values
exit 2 in `autoclf validate`, naming the field, the value and the way out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from automl_clf.cli import app
from automl_clf.spec.pruners import PRUNERS
from automl_clf.spec.samplers import SAMPLERS
from tests.conftest import tiny_spec, write_spec

runner = CliRunner()


def validate(tmp_path: Path, root: Path, study: dict[str, Any], **sections: Any) -> Any:
    path = write_spec(tmp_path / "spec.yaml", tiny_spec(root, tmp_path, study=study, **sections))
    return runner.invoke(app, ["validate", str(path)])


@pytest.mark.parametrize(
    ("study", "expected"),
    [
        ({"sampler": "tp"}, "study.sampler: unknown kind 'tp' (did you mean 'tpe'?"),
        ({"pruner": {"kind": "asha"}}, "valid kinds: median, percentile, successive_halving"),
        ({"pruner": {"kind": "median", "warmup": 2}}, "did you mean 'n_warmup_steps'?"),
        ({"sampler": {"kind": "tpe", "n_startup_trials": -1}}, "n_startup_trials: must be >= 0"),
        ({"objective": "n_params"}, "'n_params' cannot be the only objective"),
        ({"objective": ["latency_ms", "accuracy"]}, "must be a validation metric"),
        ({"objective": ["accuracy", "accuracy"]}, "objectives must be distinct"),
        (
            {"objective": ["accuracy", "latency_ms"], "pruner": "median"},
            "Optuna cannot prune multi-objective studies",
        ),
        ({"objective": ["accuracy", "n_params"], "sampler": "cmaes", "pruner": "none"}, "cmaes"),
        ({"sampler": "grid"}, "a grid needs a finite space, but model.dropout, train.lr"),
        ({"warm_start": [{"train.lrr": 0.003}]}, "did you mean 'train.lr'?"),
        ({"warm_start": [{"train.lr": 0.5}]}, "study.warm_start.0.train.lr: must lie in"),
        ({"warm_start": [{"model.cnn.filters": [5]}]}, "must be one of [4], [8], got [5]"),
        ({"heartbeat_interval": 30, "grace_period": 20}, "grace_period must be longer"),
        # past the platform's longest wait: the heartbeat thread died of OverflowError
        ({"heartbeat_interval": 10**14}, "study.heartbeat_interval: must be <= 3600, got 1"),
        ({"grace_period": 10**14}, "study.grace_period: must be <= 604800, got 1"),
        (
            {"pruner": {"kind": "hyperband", "min_resource": 5}},
            "study.pruner.min_resource: must be <= 3",
        ),
    ],
)
def test_bad_study_settings_exit_2_with_the_field_and_the_way_out(
    tmp_path: Path, digits_root: Path, study: dict[str, Any], expected: str
) -> None:
    result = validate(tmp_path, digits_root, study)
    assert result.exit_code == 2, result.output
    assert expected in result.output.replace("\n", " ") or expected in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("kind", SAMPLERS.kinds)
def test_validate_names_each_sampler(tmp_path: Path, digits_root: Path, kind: str) -> None:
    study: dict[str, Any] = {"sampler": kind}
    sections: dict[str, Any] = {}
    if kind == "grid":
        sections = {"model": {"dropout": 0.1}, "train": {"lr": {"choices": [0.01, 0.02]}}}
    if kind == "nsga2":
        study |= {"objective": ["accuracy", "latency_ms"], "pruner": "none"}
    result = validate(tmp_path, digits_root, study, **sections)
    assert result.exit_code == 0, result.output
    assert f"sampler: {kind} " in result.output


@pytest.mark.parametrize("kind", PRUNERS.kinds)
def test_validate_names_each_pruner(tmp_path: Path, digits_root: Path, kind: str) -> None:
    result = validate(tmp_path, digits_root, {"pruner": kind})
    assert result.exit_code == 0, result.output
    assert f"pruner: {kind} " in result.output


def test_validate_shows_what_is_tried_first_the_constraints_and_the_budget(
    tmp_path: Path, digits_root: Path
) -> None:
    result = validate(
        tmp_path,
        digits_root,
        {"warm_start": [{"train.lr": 0.005}], "constraints": {"max_params": 5000}},
    )
    assert "tried first: the defaults then 1 warm-start configuration(s)" in result.output
    assert "constraints: n_params <= 5000" in result.output
    assert "budget: 3 finished trials across all workers, 3 epochs per trial" in result.output


@pytest.mark.parametrize(
    ("study", "sections", "expected"),
    [
        (
            {"pruner": {"kind": "median", "n_warmup_steps": 3}},
            {},
            "study.pruner.n_warmup_steps is 3, but train.epochs is 3: no epoch is past the "
            "warm-up, so the pruner never prunes; set n_warmup_steps below 3",
        ),
        (
            {"pruner": {"kind": "percentile", "n_startup_trials": 3}},
            {},
            "study.pruner.n_startup_trials is 3, but n_trials is 3: the pruner waits for 3 "
            "complete trials, so it never prunes; set n_startup_trials below 3",
        ),
        (
            {"sampler": "tpe"},
            {},
            "study.sampler.n_startup_trials is 10, but n_trials is 3: every trial is drawn at "
            "random and tpe never proposes one; set n_startup_trials below 3, or raise n_trials",
        ),
        (
            {"sampler": {"kind": "gp", "n_startup_trials": 3}},
            {},
            "study.sampler.n_startup_trials is 3, but n_trials is 3: every trial is drawn",
        ),
        (
            {"sampler": {"kind": "nsga2", "population_size": 2}, **{"pruner": "none"}},
            {"study": {"objective": ["accuracy", "n_params"]}},
            "study.sampler.population_size is 2 and 1 queued trial(s) with every value fixed "
            "belong to no generation, but n_trials is 3: every trial is drawn at random and nsga2 "
            "never proposes one; set population_size below 2, or raise n_trials",
        ),
        (
            {"sampler": "random"},
            {"model": {"dropout": 0.1}, "train": {"lr": 0.01}, "augment": {"policy": "none"}},
            "the search space has 2 configurations, but n_trials is 3: at least 1 trial repeats "
            "one; set n_trials: 2 (or sampler: grid, which runs each once), or search more",
        ),
        (
            {"sampler": "random"},
            {
                "model": {"dropout": 0.1, "cnn": {"filters": [4]}},
                "train": {"lr": 0.01},
                "augment": {"policy": "none"},
            },
            "the search space is a single configuration (nothing is searched), but n_trials is "
            "3: every trial trains the same model; set n_trials: 1, or make a field a range",
        ),
    ],
)
def test_validate_warns_of_settings_that_can_never_act(
    tmp_path: Path,
    digits_root: Path,
    study: dict[str, Any],
    sections: dict[str, Any],
    expected: str,
) -> None:
    study = {**study, **sections.pop("study", {})}
    result = validate(tmp_path, digits_root, study, **sections)
    assert result.exit_code == 0, result.output
    assert f"warning: {expected}" in " ".join(result.output.split())


def test_validate_prints_no_warning_when_every_part_can_act(
    tmp_path: Path, digits_root: Path
) -> None:
    study = {"n_trials": 6, "sampler": {"kind": "tpe", "n_startup_trials": 2}}
    result = validate(tmp_path, digits_root, study)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
