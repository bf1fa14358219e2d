"""What a study tries before its sampler (spec/warmstart.py): the spec's defaults (each field's
class default where the space holds it, else the middle of its range or its first choice) and
the warm-start entries, each checked against the space trials sample."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from automl_clf.errors import SpecError
from automl_clf.spec import parse_spec
from automl_clf.spec.models import Spec
from automl_clf.spec.warmstart import default_params, warm_start_params
from tests.conftest import tiny_spec


def spec_of(tmp_path: Path, root: Path, **sections: dict[str, Any]) -> Spec:
    return parse_spec(tiny_spec(root, tmp_path, **sections), base_dir=tmp_path)


def test_the_defaults_are_the_class_defaults_where_the_space_holds_them(
    tmp_path: Path, digits_root: Path
) -> None:
    # train.lr's class default (1e-3) lies in [1e-3, 1e-2]; augment.policy's is a choice.
    params = default_params(spec_of(tmp_path, digits_root))
    assert params["train.lr"] == 1e-3
    assert params["model.cnn.filters"] == "[4]"  # no class default among them: the first
    assert set(params) == {"train.lr", "model.dropout", "model.cnn.filters", "augment.policy"}


def test_outside_the_space_the_default_is_the_middle_of_the_range(
    tmp_path: Path, digits_root: Path
) -> None:
    spec = spec_of(
        tmp_path,
        digits_root,
        train={"lr": {"low": 0.01, "high": 1.0, "log": True}},  # 1e-3 lies outside
        model={"dropout": {"low": 0.5, "high": 0.8, "step": 0.2}},
    )
    params = default_params(spec)
    assert params["train.lr"] == pytest.approx(math.sqrt(0.01 * 1.0))  # geometric: a log range
    assert params["model.dropout"] == pytest.approx(0.7)  # 0.65 snapped to the step


def test_a_spec_that_searches_nothing_has_no_defaults_to_queue(
    tmp_path: Path, digits_root: Path
) -> None:
    spec = spec_of(
        tmp_path,
        digits_root,
        model={"dropout": 0.1, "cnn": {"filters": [4], "fc_width": 16}},
        train={"lr": 0.01},
        augment={"policy": "none"},
    )
    assert default_params(spec) == {}


def test_a_warm_start_entry_becomes_the_params_optuna_stores(
    tmp_path: Path, digits_root: Path
) -> None:
    spec = spec_of(
        tmp_path,
        digits_root,
        study={"warm_start": [{"train.lr": 0.005, "model.cnn.filters": [8]}, {}]},
    )
    # A partial entry leaves the rest to the sampler: only what it names is fixed.
    assert warm_start_params(spec) == [{"train.lr": 0.005, "model.cnn.filters": "[8]"}, {}]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"train.lrr": 0.003},
            "'train.lrr' is not a searched parameter (did you mean 'train.lr'?",
        ),
        ({"train.lr": 0.5}, "study.warm_start.0.train.lr: must lie in [0.001, 0.01], got 0.5"),
        ({"train.lr": "fast"}, "train.lr: must be a number, got 'fast'"),
        ({"model.dropout": 0.15}, "model.dropout: must be 0.0 + a multiple of 0.1, got 0.15"),
        ({"model.cnn.filters": [5]}, "must be one of [4], [8], got [5]"),
        ({"train.batch_size": 16.5}, "train.batch_size: must be a whole number, got 16.5"),
    ],
    ids=["unknown name", "outside the range", "not a number", "off the step", "no choice", "int"],
)
def test_a_warm_start_entry_the_space_cannot_take_is_a_spec_error(
    tmp_path: Path, digits_root: Path, entry: dict[str, Any], message: str
) -> None:
    raw = tiny_spec(digits_root, tmp_path, study={"warm_start": [entry]})
    raw["model"]["dropout"] = {"low": 0.0, "high": 0.3, "step": 0.1}
    raw["train"]["batch_size"] = {"low": 8, "high": 32}
    with pytest.raises(SpecError) as raised:
        parse_spec(raw, base_dir=tmp_path)
    assert message in " ".join(str(raised.value).split())
