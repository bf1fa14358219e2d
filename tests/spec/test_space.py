"""Search-space values (spec/space.py): a tunable field takes a literal, a range or choices; the
field's bounds hold for every value a trial can draw; values are sampled from (and replayed
into) a trial as Optuna stores them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import optuna
import pytest
from pydantic import Field, ValidationError

from automl_clf.errors import SpecError
from automl_clf.spec import parse_spec
from automl_clf.spec.space import (
    Choice,
    FixedParams,
    FloatRange,
    IntRange,
    SpecModel,
    Tunable,
    candidate_values,
    choice_label,
    is_search_space,
    sample,
)
from tests.conftest import tiny_spec

PositiveFloat = Annotated[float, Field(gt=0)]
OddInt = Annotated[int, Field(ge=1, le=9)]


class Fields(SpecModel):
    """A spec section with one tunable field of each kind of literal."""

    rate: Tunable[PositiveFloat] = 0.1
    size: Tunable[OddInt] = 3
    name: Tunable[str] = "a"
    widths: Tunable[list[int]] = Field(default_factory=lambda: [4])


def test_a_literal_a_range_and_choices_each_read_as_what_they_are() -> None:
    fields = Fields.model_validate(
        {
            "rate": {"low": 1e-4, "high": 0.1, "log": True},
            "size": {"low": 1, "high": 7, "step": 2},
            "name": {"choices": ["a", "b"]},
            "widths": [8, 16],  # a literal list: one value, never searched
        }
    )
    assert isinstance(fields.rate, FloatRange) and fields.rate.log
    assert isinstance(fields.size, IntRange) and fields.size.step == 2
    assert isinstance(fields.name, Choice) and fields.name.choices == ["a", "b"]
    assert fields.widths == [8, 16] and not is_search_space(fields.widths)
    assert all(is_search_space(v) for v in (fields.rate, fields.size, fields.name))


@pytest.mark.parametrize(
    "value",
    [-1.0, {"low": 0.0, "high": 1.0}, {"low": 0.1, "high": -1.0}, {"choices": [0.1, 0.0]}],
    ids=["literal", "range low", "range high", "a choice"],
)
def test_the_field_s_bounds_hold_for_the_literal_both_range_ends_and_every_choice(
    value: Any,
) -> None:
    with pytest.raises(ValidationError, match="greater than 0"):
        Fields.model_validate({"rate": value})


def test_a_spec_s_bound_on_a_range_end_names_where_it_is_written(
    tmp_path: Path, digits_root: Path
) -> None:
    raw = tiny_spec(digits_root, tmp_path, train={"lr": {"low": 0.0, "high": 1e-2}})
    with pytest.raises(SpecError, match=r"train\.lr\.low") as raised:
        parse_spec(raw, base_dir=tmp_path)
    assert "=range" not in str(raised.value)  # pydantic's union tags name no field


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"low": 0.5, "high": 0.1}, "low must be <= high, got low=0.5, high=0.1"),
        ({"low": 0.001, "high": 0.1, "log": True, "step": 0.01}, "both log: true and a step"),
        ({"choices": [0.1, 0.1]}, "choices must be distinct, got 0.1 twice"),
        ({"choices": []}, "at least 1 item"),
        ({"low": 0.1, "high": 1.0, "lg": True}, "Extra inputs are not permitted"),
        (float("inf"), "finite number"),
    ],
    ids=["low above high", "log and step", "repeated choice", "no choice", "typo", "infinite"],
)
def test_a_range_or_choice_that_cannot_be_searched_is_refused(value: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Fields.model_validate({"rate": value})


def test_a_log_range_needs_a_positive_low_end() -> None:
    with pytest.raises(ValidationError, match="a log range needs low > 0"):
        FloatRange[float].model_validate({"low": 0.0, "high": 1.0, "log": True})


def test_choices_given_as_lists_are_told_apart_by_their_content() -> None:
    with pytest.raises(ValidationError, match="distinct"):
        Fields.model_validate({"widths": {"choices": [[4, 8], [4, 8]]}})
    fields = Fields.model_validate({"widths": {"choices": [[4], [4, 8]]}})
    assert isinstance(fields.widths, Choice) and fields.widths.choices == [[4], [4, 8]]


def test_range_models_are_titled_with_their_bounds() -> None:
    assert FloatRange[PositiveFloat].__name__ == "FloatRange[float > 0]"
    assert IntRange[OddInt].__name__ == "IntRange[int >= 1, <= 9]"
    assert Choice[list[int]].__name__ == "Choice[list[int]]"


def test_candidate_values_are_every_value_a_trial_can_draw() -> None:
    fields = Fields.model_validate(
        {"size": {"low": 1, "high": 8, "step": 3}, "rate": {"low": 0.1, "high": 0.95, "step": 0.2}}
    )
    assert candidate_values(fields.size) == [1, 4, 7]
    assert candidate_values(fields.rate) == pytest.approx([0.1, 0.9])  # the last step reached
    assert candidate_values(Choice[str](choices=["a", "b"])) == ["a", "b"]
    assert candidate_values(0.3) == [0.3]


def test_a_choice_is_stored_as_a_value_optuna_holds_and_lists_as_sorted_json() -> None:
    assert choice_label(3) == 3 and choice_label(None) is None and choice_label("x") == "x"
    assert choice_label([4, 8]) == "[4, 8]"
    assert choice_label({"b": 1, "a": 2}) == choice_label({"a": 2, "b": 1}) == '{"a": 2, "b": 1}'


def test_an_optuna_trial_samples_each_kind_within_its_space() -> None:
    fields = Fields.model_validate(
        {
            "rate": {"low": 1e-4, "high": 0.1, "log": True},
            "size": {"low": 1, "high": 7, "step": 2},
            "widths": {"choices": [[4], [4, 8]]},
        }
    )
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask()
    rate = sample(trial, "rate", fields.rate)
    size = sample(trial, "size", fields.size)
    widths = sample(trial, "widths", fields.widths)
    assert 1e-4 <= rate <= 0.1 and size in (1, 3, 5, 7)
    assert widths in ([4], [4, 8]) and isinstance(widths, list)  # the choice, not its label
    assert trial.params["widths"] == json.dumps(widths)
    distributions = trial.distributions
    assert isinstance(distributions["rate"], optuna.distributions.FloatDistribution)
    assert distributions["rate"].log
    assert distributions["size"] == optuna.distributions.IntDistribution(1, 7, step=2)
    assert sample(trial, "name", "a") == "a" and "name" not in trial.params  # a literal


def test_fixed_params_replay_a_trial_and_refuse_what_it_never_had() -> None:
    fields = Fields.model_validate(
        {"rate": {"low": 0.01, "high": 0.1}, "name": {"choices": ["a", "b"]}}
    )
    replay = FixedParams({"rate": 0.05, "name": "b"})
    assert sample(replay, "rate", fields.rate) == 0.05
    assert sample(replay, "name", fields.name) == "b"
    assert replay.used == ["rate", "name"]
    with pytest.raises(KeyError, match="no value for search parameter 'size'"):
        sample(FixedParams({}), "size", IntRange[int](low=1, high=3))
    with pytest.raises(ValueError, match=r"name: 'c' is not one of the choices \['a', 'b'\]"):
        sample(FixedParams({"name": "c"}), "name", fields.name)
    loose = FixedParams({}, strict=False)
    assert sample(loose, "rate", fields.rate) == 0.01 and sample(loose, "name", fields.name) == "a"
