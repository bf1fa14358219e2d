"""Search-space values: any tunable spec field is a literal, a range or a list of choices.

In YAML a tunable field reads naturally either way::

    lr: 1.0e-3                                   # a literal: never searched
    lr: {low: 1.0e-4, high: 0.1, log: true}      # a range
    batch_size: {choices: [32, 64, 128]}         # a categorical, of any YAML value

`Tunable[X]` builds the pydantic type for a field whose literal type is `X`. The bounds on `X`
(e.g. `Annotated[float, Field(gt=0)]`) apply to the literal, to both ends of a range and to every
choice, so `train.lr.low: must be > 0` is caught where it is written.

A trial turns each tunable into one value through a `ParamSource` (an `optuna.Trial` is one), so
the same resolver serves Optuna trials, fixed replays and the space description.
"""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Generic, Protocol, TypeAlias, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator
from pydantic_core import to_jsonable_python

T = TypeVar("T")

# The tags pydantic puts into an error's location; they name no field, so error messages drop
# them (see spec/load.py). They start with '=' so they can never clash with a field name.
VALUE_TAG, RANGE_TAG, CHOICES_TAG = "=value", "=range", "=choices"
TAGS = frozenset({VALUE_TAG, RANGE_TAG, CHOICES_TAG})

CategoricalValue = None | bool | int | float | str


class SpecModel(BaseModel):
    """Base of every spec model: unknown keys are errors, a loaded spec is immutable, and every
    float is finite (`lr: .inf` or a NaN would only surface as a failed trial, or never).

    A field's docstring (the string literal under it) is its description in `autoclf schema`
    and in docs/spec-reference.md, so editors show it on completion and hover.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, use_attribute_docstrings=True
    )


def _short_type_name(tp: Any) -> str:
    """'float > 0' for `Annotated[float, Field(gt=0)]`, 'list[int >= 1], 1 to 8 items' for a
    bounded list: the readable titles (and, through spec/schema.py, `$defs` names) of the
    range and choice models, which must still tell a `[0, 1]` range from a `[0, 1)` one."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        inner, *metadata = typing.get_args(tp)
        return " ".join([_short_type_name(inner), *_bounds(metadata)]).replace(" ,", ",")
    if origin in (list, tuple):
        return f"{origin.__name__}[{_short_type_name(typing.get_args(tp)[0])}]"
    if origin is typing.Literal:
        return "|".join(str(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return "|".join(_short_type_name(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


def _bounds(metadata: Sequence[Any]) -> list[str]:
    """`>= 0, < 1` and `1 to 8 items` from an Annotated type's constraints (pydantic's
    `FieldInfo` or annotated-types objects alike); tags and discriminators say nothing."""
    items = [m for entry in metadata for m in (getattr(entry, "metadata", None) or [entry])]
    limits = [
        f"{op} {getattr(m, name)}" for m in items for name, op in _BOUNDS if hasattr(m, name)
    ]
    lengths = [getattr(m, n) for m in items for n in ("min_length", "max_length") if hasattr(m, n)]
    parts = [", ".join(limits)] if limits else []
    if len(lengths) == 2:
        parts.append(f", {lengths[0]} to {lengths[1]} items")
    elif lengths:
        parts.append(f", {lengths[0]}+ items")
    return parts


class _SpaceModel(SpecModel):
    # The field descriptions are given as `Field(description=...)`, not as docstrings: on
    # Python < 3.13 pydantic looks for a class's source by walking the call stack, which for
    # each `Tunable[X]` parametrisation (dozens, at import) finds nothing and costs seconds in
    # all; the parametrised classes take the descriptions from these.
    model_config = SpecModel.model_config | {"use_attribute_docstrings": False}

    @classmethod
    def model_parametrized_name(cls, params: tuple[Any, ...]) -> str:
        return f"{cls.__name__}[{', '.join(_short_type_name(p) for p in params)}]"


_LOW = "The smallest value a trial can draw."
_HIGH = "The largest value a trial can draw (included)."


class FloatRange(_SpaceModel, Generic[T]):
    """A float range, sampled uniformly (or log-uniformly with `log: true`)."""

    low: Annotated[T, Field(description=_LOW)]
    high: Annotated[T, Field(description=_HIGH)]
    log: Annotated[
        bool,
        Field(
            description="Draw log-uniformly: for scales such as learning rates, where 1e-4 to "
            "1e-3 matters as much as 1e-3 to 1e-2."
        ),
    ] = False
    step: Annotated[
        Annotated[float, Field(gt=0)] | None,
        Field(
            description="Draw only low, low + step, low + 2·step, …; none: any value in the range."
        ),
    ] = None

    @model_validator(mode="after")
    def _check(self) -> FloatRange[T]:
        _check_range(self.low, self.high, self.log, self.step)
        return self


class IntRange(_SpaceModel, Generic[T]):
    """An integer range, both ends included, every `step`-th value."""

    low: Annotated[T, Field(description=_LOW)]
    high: Annotated[T, Field(description=_HIGH)]
    log: Annotated[
        bool,
        Field(description="Draw log-uniformly (small values as likely as large ones, by ratio)."),
    ] = False
    step: Annotated[
        int, Field(ge=1, description="Draw only low, low + step, low + 2·step, … up to high.")
    ] = 1

    @model_validator(mode="after")
    def _check(self) -> IntRange[T]:
        _check_range(self.low, self.high, self.log, None if self.step == 1 else self.step)
        return self


class Choice(_SpaceModel, Generic[T]):
    """A categorical: one of `choices`, which may be any YAML values (numbers, strings, lists)."""

    choices: Annotated[
        list[T],
        Field(
            min_length=1,
            description="The values a trial picks from, each a whole value of the field (a list "
            "is one choice).",
        ),
    ]

    @model_validator(mode="after")
    def _check(self) -> Choice[T]:
        labels = [str(choice_label(c)) for c in self.choices]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"choices must be distinct, got {', '.join(duplicates)} twice")
        return self


def _check_range(low: Any, high: Any, log: bool, step: Any) -> None:
    if low > high:
        raise ValueError(f"low must be <= high, got low={low}, high={high}")
    if log and low <= 0:
        raise ValueError(f"a log range needs low > 0, got low={low}")
    if log and step is not None:
        raise ValueError("a range cannot have both log: true and a step")


SearchSpace = FloatRange[Any] | IntRange[Any] | Choice[Any]


def _tunable_kind(value: Any) -> str:
    if isinstance(value, dict):
        if "choices" in value:
            return CHOICES_TAG
        if "low" in value or "high" in value:
            return RANGE_TAG
    if isinstance(value, Choice):
        return CHOICES_TAG
    if isinstance(value, (FloatRange, IntRange)):
        return RANGE_TAG
    return VALUE_TAG


def _base_type(tp: Any) -> Any:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _build_tunable(value_type: Any) -> Any:
    members: list[Any] = [
        Annotated[value_type, Tag(VALUE_TAG)],
        Annotated[Choice[value_type], Tag(CHOICES_TAG)],
    ]
    base = _base_type(value_type)
    if base is float:
        members.append(Annotated[FloatRange[value_type], Tag(RANGE_TAG)])
    elif base is int:
        members.append(Annotated[IntRange[value_type], Tag(RANGE_TAG)])
    return Annotated[Union[tuple(members)], Discriminator(_tunable_kind)]  # noqa: UP007


if TYPE_CHECKING:
    Tunable: TypeAlias = T | FloatRange[T] | IntRange[T] | Choice[T]
else:

    class Tunable:
        """`Tunable[X]`: a literal X, a range of X (numbers only) or a list of X choices."""

        def __class_getitem__(cls, value_type: Any) -> Any:
            return _build_tunable(value_type)


def is_search_space(value: Any) -> bool:
    return isinstance(value, (FloatRange, IntRange, Choice))


def candidate_values(value: Any) -> list[Any]:
    """Every value a rule on a tunable field must hold for: the literal, every choice, every
    value of an integer range, and both ends of a float range.

    A rule checked on these holds for every value a trial can draw: rules on floats are bounds
    and sums, which hold inside a range when they hold at its ends, and an integer range is
    listed whole, so a rule such as "odd" sees every value (the integer fields that have such
    rules are small, e.g. kernel sizes). A float range's high end is the last value its step
    reaches, as Optuna samples it.
    """
    if isinstance(value, Choice):
        return list(value.choices)
    if isinstance(value, IntRange):
        return list(range(value.low, value.high + 1, value.step))
    if isinstance(value, FloatRange):
        high = value.high
        if value.step is not None:
            high = (
                value.low + math.floor((value.high - value.low) / value.step + 1e-9) * value.step
            )
        return [value.low, high]
    return [value]


def choice_label(value: Any) -> CategoricalValue:
    """Optuna stores categoricals as None/bool/int/float/str: other values go in as JSON text.

    Keys are sorted, so a custom transform list reads the same however its mappings were
    written (a warm-start entry, the spec's own choice).
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(to_jsonable_python(value), sort_keys=True)


class ParamSource(Protocol):
    """Where a trial's values come from. `optuna.Trial` satisfies this protocol as it is."""

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float: ...

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int: ...

    def suggest_categorical(
        self, name: str, choices: Sequence[CategoricalValue]
    ) -> CategoricalValue: ...


def sample(source: ParamSource, name: str, value: Any) -> Any:
    """One concrete value for the tunable `value`, asking `source` under the param `name`."""
    if isinstance(value, FloatRange):
        return source.suggest_float(
            name, float(value.low), float(value.high), step=value.step, log=value.log
        )
    if isinstance(value, IntRange):
        return source.suggest_int(name, value.low, value.high, step=value.step, log=value.log)
    if isinstance(value, Choice):
        labels = [choice_label(c) for c in value.choices]
        picked = source.suggest_categorical(name, labels)
        return value.choices[labels.index(picked)]
    return value


class FixedParams:
    """A `ParamSource` that replays known values (a stored trial, a warm-start configuration).

    Args:
        params: param name -> value, as Optuna stores them (lists as their JSON text).
        strict: raise on a name that is missing; otherwise fall back to the first choice / low.
    """

    def __init__(self, params: dict[str, Any], *, strict: bool = True) -> None:
        self.params = params
        self.strict = strict
        self.used: list[str] = []

    def _get(self, name: str, fallback: Any) -> Any:
        self.used.append(name)
        if name in self.params:
            return self.params[name]
        if self.strict:
            raise KeyError(f"no value for search parameter {name!r}")
        return fallback

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        return float(self._get(name, low))

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        return int(self._get(name, low))

    def suggest_categorical(
        self, name: str, choices: Sequence[CategoricalValue]
    ) -> CategoricalValue:
        value = self._get(name, choices[0])
        if value not in choices:
            raise ValueError(f"{name}: {value!r} is not one of the choices {list(choices)}")
        return value
