"""Resolving a spec into one TrialConfig, and describing its search space."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest

from automl_clf.spec import FixedParams, describe_space, parse_spec, resolve
from automl_clf.spec.config import TrialConfig
from tests.conftest import tiny_spec


def make_spec(root: Path, tmp_path: Path, **sections):  # type: ignore[no-untyped-def]
    return parse_spec(tiny_spec(root, tmp_path, **sections), base_dir=tmp_path)


def test_literals_pass_through_and_spaces_are_sampled(digits_root: Path, tmp_path: Path) -> None:
    spec = make_spec(digits_root, tmp_path)
    params = {
        "model.backbone": "cnn",  # a literal: never asked
        "model.dropout": 0.25,
        "model.cnn.filters": "[8]",  # list choices are stored as their JSON text
        "train.lr": 0.005,
        "augment.policy": "light",
    }
    source = FixedParams(params)
    config = resolve(spec, source)
    assert isinstance(config, TrialConfig)
    assert config.model.dropout == 0.25
    assert config.model.cnn is not None and config.model.cnn.filters == (8,)
    assert config.train.lr == 0.005
    assert config.train.batch_size == 16
    assert config.augment.policy == "light"
    assert "model.backbone" not in source.used  # literals are not parameters


def test_cnn_values_are_only_sampled_for_the_cnn(digits_root: Path, tmp_path: Path) -> None:
    spec = make_spec(
        digits_root, tmp_path, model={"backbone": {"choices": ["cnn", "test_resnet"]}}
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = {"cnn": 0, "test_resnet": 0}
    for _ in range(12):
        trial = study.ask()
        config = resolve(spec, trial)
        seen[config.model.backbone] += 1
        has_cnn_params = "model.cnn.filters" in trial.params
        assert has_cnn_params == (config.model.backbone == "cnn")
        assert (config.model.cnn is not None) == has_cnn_params
        study.tell(trial, 0.0)
    assert all(seen.values())


def test_momentum_is_only_sampled_for_sgd(digits_root: Path, tmp_path: Path) -> None:
    spec = make_spec(
        digits_root,
        tmp_path,
        train={"optimizer": {"choices": ["adamw", "sgd"]}, "momentum": {"low": 0.8, "high": 0.99}},
    )
    base = {
        "model.dropout": 0.1,
        "model.cnn.filters": "[4]",
        "train.lr": 0.01,
        "augment.policy": "none",
    }
    adamw = resolve(spec, FixedParams({**base, "train.optimizer": "adamw"}))
    assert adamw.train.momentum is None
    with pytest.raises(KeyError, match=r"train\.momentum"):
        resolve(spec, FixedParams({**base, "train.optimizer": "sgd"}))
    sgd = resolve(spec, FixedParams({**base, "train.optimizer": "sgd", "train.momentum": 0.9}))
    assert sgd.train.momentum == 0.9


def test_describe_space_lists_conditions_and_finite_size(
    digits_root: Path, tmp_path: Path
) -> None:
    spec = make_spec(
        digits_root,
        tmp_path,
        model={"backbone": {"choices": ["cnn", "test_resnet"]}, "dropout": 0.1},
        train={"lr": 0.01, "batch_size": {"choices": [8, 16, 32]}},
    )
    space = describe_space(spec)
    by_name = {p.name: p for p in space.params}
    assert by_name["model.cnn.filters"].condition == "model.backbone=cnn"
    assert by_name["train.batch_size"].condition == ""
    # cnn: 2 filter choices; test_resnet: none; × 3 batch sizes × 2 policies
    assert space.size == (2 + 1) * 3 * 2
    assert space.complete


def test_describe_space_is_infinite_with_a_continuous_range(
    digits_root: Path, tmp_path: Path
) -> None:
    space = describe_space(make_spec(digits_root, tmp_path))
    assert math.isinf(space.size)
    assert "continuous" in space.size_text


AFFINE = [{"name": "Affine", "rotate": [-10, 10], "p": 0.5}]
BLUR = [{"name": "Blur", "blur_limit": [3, 3]}]


def test_a_policy_choice_may_be_a_custom_list(digits_root: Path, tmp_path: Path) -> None:
    spec = make_spec(
        digits_root,
        tmp_path,
        augment={
            "policy": {"choices": ["none", "light", AFFINE]},
            "magnitude": {"low": 0.5, "high": 1.5},
            "hflip": {"choices": [False, True]},
        },
    )
    base = {"model.dropout": 0.1, "model.cnn.filters": "[4]", "train.lr": 0.01}
    by_name = {p.name: p for p in describe_space(spec).params}
    assert by_name["augment.policy"].detail.startswith("{none, light, [{")
    assert "augment.policy=light" in by_name["augment.magnitude"].condition
    custom = FixedParams({**base, "augment.policy": json.dumps(AFFINE, sort_keys=True)})
    config = resolve(spec, custom)
    assert config.augment.transforms == tuple(AFFINE)  # the list that runs is recorded
    assert config.augment.policy == "none" and config.augment.hflip is False
    assert "augment.hflip" not in custom.used  # hflip and magnitude belong to named policies
    assert "augment.magnitude" not in custom.used
    named = {"augment.policy": "light", "augment.magnitude": 1.5, "augment.hflip": True}
    light = resolve(spec, FixedParams({**base, **named}))
    assert light.augment.transforms is None and light.augment.policy == "light"
    assert light.augment.hflip is True and light.augment.magnitude == 1.5


def test_custom_lists_are_searchable_as_transforms_choices(
    digits_root: Path, tmp_path: Path
) -> None:
    spec = make_spec(
        digits_root,
        tmp_path,
        augment={"policy": "none", "transforms": {"choices": [AFFINE, BLUR]}},
    )
    by_name = {p.name: p for p in describe_space(spec).params}
    assert by_name["augment.transforms"].n_values == 2 and "augment.policy" not in by_name
    base = {"model.dropout": 0.1, "model.cnn.filters": "[4]", "train.lr": 0.01}
    blur = json.dumps(BLUR, sort_keys=True)
    config = resolve(spec, FixedParams({**base, "augment.transforms": blur}))
    assert config.augment.transforms == tuple(BLUR)
