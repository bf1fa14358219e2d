"""What a study tries before its sampler: the spec's defaults, then known-good configurations.

Both are turned into Optuna params here (param name -> value as Optuna stores it, lists as their
JSON text), by running the resolver with a `ParamSource` that answers from them, so a warm-start
entry is checked against exactly the space that trials sample: an unknown name, a value outside a
range or not among the choices is a spec error before any training.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from typing import Any

from automl_clf.spec.describe import describe_space, grid_points
from automl_clf.spec.models import Spec
from automl_clf.spec.resolve import resolve
from automl_clf.spec.space import CategoricalValue, choice_label


def _field_default(name: str) -> Any:
    """The spec class's default of a dotted param name (`train.lr` -> TrainSpec's 1e-3)."""
    model: Any = Spec
    parts = name.split(".")
    for part in parts[:-1]:
        model = model.model_fields[part].annotation
    return model.model_fields[parts[-1]].get_default(call_default_factory=True)


def _snap(value: float, low: float, step: float | None) -> float:
    return value if step is None else low + round((value - low) / step) * step


class _Defaults:
    """A ParamSource answering each field's class default where it lies in the space, else the
    middle of a range (geometric for log ranges) or the first choice."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def _numeric(self, name: str, low: float, high: float, step: float | None, log: bool) -> float:
        default = _field_default(name)
        if isinstance(default, (int, float)) and low <= default <= high:
            return _snap(float(default), low, step)
        middle = math.sqrt(low * high) if log else (low + high) / 2
        return _snap(middle, low, step)

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        value = min(max(self._numeric(name, low, high, step, log), low), high)
        self.params[name] = value
        return value

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        value = int(self._numeric(name, low, high, step, log))
        value = min(max(value, low), low + (high - low) // step * step)
        self.params[name] = value
        return value

    def suggest_categorical(
        self, name: str, choices: Sequence[CategoricalValue]
    ) -> CategoricalValue:
        label = choice_label(_field_default(name))
        value = label if label in choices else choices[0]
        self.params[name] = value
        return value


def default_params(spec: Spec) -> dict[str, Any]:
    """Trial 0's params: see `_Defaults`. Empty when the spec searches nothing."""
    source = _Defaults()
    resolve(spec, source)
    return source.params


class _Checked:
    """A ParamSource that answers from one warm-start entry, checking each value it gives."""

    def __init__(self, entry: dict[str, Any], where: str) -> None:
        self.entry = entry
        self.where = where
        self.params: dict[str, Any] = {}

    def _number(self, name: str, low: float, high: float, step: float | None) -> Any:
        value = self.entry[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{self.where}.{name}: must be a number, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"{self.where}.{name}: must lie in [{low}, {high}], got {value!r}")
        if step is not None and not math.isclose(
            (value - low) / step, round((value - low) / step), abs_tol=1e-8
        ):
            raise ValueError(
                f"{self.where}.{name}: must be {low} + a multiple of {step}, got {value!r}"
            )
        self.params[name] = value
        return value

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        return float(self._number(name, low, high, step)) if name in self.entry else low

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        if name not in self.entry:
            return low
        if not isinstance(self.entry[name], int):
            value = self.entry[name]
            raise ValueError(f"{self.where}.{name}: must be a whole number, got {value!r}")
        return int(self._number(name, low, high, step))

    def suggest_categorical(
        self, name: str, choices: Sequence[CategoricalValue]
    ) -> CategoricalValue:
        if name not in self.entry:
            return choices[0]
        label = choice_label(self.entry[name])
        if label not in choices:
            listed = ", ".join(str(c) for c in choices)
            raise ValueError(
                f"{self.where}.{name}: must be one of {listed}, got {self.entry[name]!r}"
            )
        self.params[name] = label
        return label


def warm_start_params(spec: Spec) -> list[dict[str, Any]]:
    """The spec's `study.warm_start` entries as Optuna params, each checked against the space.

    Raises:
        ValueError: an entry names an unknown param or gives a value the space cannot take.
    """
    if not spec.study.warm_start:
        return []
    names = [p.name for p in describe_space(spec).params]
    converted = []
    for i, entry in enumerate(spec.study.warm_start):
        where = f"study.warm_start.{i}"
        for name in entry:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                listed = ", ".join(names) or "none: the spec searches nothing"
                raise ValueError(
                    f"{where}: {name!r} is not a searched parameter ({hint}parameters: {listed})"
                )
        source = _Checked(entry, where)
        resolve(spec, source)
        converted.append(source.params)
    return converted


def check_search_settings(spec: Spec) -> None:
    """The study settings that depend on other sections: warm-start entries and the grid (the
    search space), the pruner's epochs (`train.epochs`).

    Raises:
        ValueError: with the field path and the value, for a spec-level validator.
    """
    spec.study.effective_pruner.check(spec.train.epochs)
    warm_start_params(spec)
    if spec.study.sampler.enumerates_space:
        try:
            grid_points(spec)
        except ValueError as exc:
            raise ValueError(f"study.sampler: {exc}") from None
