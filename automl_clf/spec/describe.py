"""Describe a spec's search space: each parameter, its kind and range, when it is active, and the
number of distinct configurations where that number is finite.

Rather than re-stating the resolver's conditions, this runs the resolver itself over every branch
of the categorical choices (a depth-first walk with a recording `ParamSource`), so the
description can never disagree with what trials really sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from automl_clf.spec.models import Spec
from automl_clf.spec.resolve import resolve
from automl_clf.spec.space import CategoricalValue

MAX_BRANCHES = 20_000  # resolver runs; beyond this the size is reported as a lower bound
MAX_GRID_POINTS = 10_000  # configurations a grid search may enumerate (each a queued trial)


@dataclass
class ParamInfo:
    name: str
    kind: str  # "float", "int" or "categorical"
    detail: str  # the range or the choices, as text
    n_values: float  # math.inf for a continuous range
    condition: str = ""  # e.g. "model.backbone=cnn"; empty when always active


@dataclass
class SpaceDescription:
    params: list[ParamInfo]
    size: float  # number of distinct configurations; math.inf when any range is continuous
    complete: bool = True  # False when the walk stopped at MAX_BRANCHES (size is a lower bound)

    @property
    def size_text(self) -> str:
        if math.isinf(self.size):
            n_discrete = sum(1 for p in self.params if not math.isinf(p.n_values))
            return f"continuous ({len(self.params)} parameters, {n_discrete} discrete)"
        return f"{int(self.size):,}" + ("" if self.complete else "+") + " configurations"


@dataclass
class _Recorder:
    """A ParamSource that answers from a plan (param name -> value index), else the first value.

    Categoricals are always branch points; discrete ranges (ints, floats with a step) are branch
    points only with `expand_ranges`, which enumerates every configuration (the grid).
    """

    plan: dict[str, int]
    expand_ranges: bool = False
    # (param, (index, label) of the value taken, or None for a range that is not expanded)
    calls: list[tuple[ParamInfo, tuple[int, str] | None]] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)  # as Optuna stores them

    def _range(self, info: ParamInfo, low: Any, step: Any) -> Any:
        if not self.expand_ranges or math.isinf(info.n_values):
            self.calls.append((info, None))
            self.values[info.name] = low
            return low
        index = self.plan.get(info.name, 0)
        value = low + index * step
        if isinstance(value, float):
            value = round(value, 12)  # 0.1 + 2 * 0.1 is 0.30000000000000004
        self.calls.append((info, (index, str(value))))
        self.values[info.name] = value
        return value

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        n = math.inf if step is None else math.floor((high - low) / step + 1e-9) + 1
        scale = ", log" if log else (f", step {step:g}" if step else "")
        info = ParamInfo(name, "float", f"[{low:g}, {high:g}{scale}]", n)
        return float(self._range(info, low, step))

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        scale = ", log" if log else (f", step {step}" if step > 1 else "")
        n = (high - low) // step + 1
        return int(self._range(ParamInfo(name, "int", f"[{low}, {high}{scale}]", n), low, step))

    def suggest_categorical(
        self, name: str, choices: Sequence[CategoricalValue]
    ) -> CategoricalValue:
        index = self.plan.get(name, 0)
        detail = "{" + ", ".join(str(c) for c in choices) + "}"
        info = ParamInfo(name, "categorical", detail, len(choices))
        self.calls.append((info, (index, str(choices[index]))))
        self.values[name] = choices[index]
        return choices[index]


def _walk(spec: Spec, *, expand_ranges: bool, limit: int) -> tuple[list[_Recorder], bool]:
    """Run the resolver once per branch (depth first); returns the runs and whether the walk
    finished before `limit` runs."""
    runs: list[_Recorder] = []
    stack: list[dict[str, int]] = [{}]
    while stack and len(runs) < limit:
        plan = stack.pop()
        recorder = _Recorder(plan, expand_ranges)
        resolve(spec, recorder)
        runs.append(recorder)
        prefix: dict[str, int] = {}  # the choices this run made so far
        for info, picked in recorder.calls:
            if picked is None:
                continue
            if info.name not in plan:  # a new branch point: visit its other values later
                stack.extend({**prefix, info.name: i} for i in range(1, int(info.n_values)))
            prefix[info.name] = picked[0]
    return runs, not stack


def describe_space(spec: Spec) -> SpaceDescription:
    """Walk every categorical branch of the spec's search space once."""
    seen: dict[str, ParamInfo] = {}
    contexts: dict[str, list[set[str]]] = {}  # param -> assignments before it, one set per run
    all_runs: list[set[str]] = []
    size = 0.0
    runs, complete = _walk(spec, expand_ranges=False, limit=MAX_BRANCHES)
    for recorder in runs:
        leaf_size = 1.0
        assignments: set[str] = set()
        for info, picked in recorder.calls:
            seen.setdefault(info.name, info)
            contexts.setdefault(info.name, []).append(set(assignments))
            if picked is None:
                leaf_size *= info.n_values
                continue
            assignments.add(f"{info.name}={picked[1]}")
        all_runs.append(assignments)
        size += leaf_size
    always = set.intersection(*all_runs) if all_runs else set()
    for name, info in seen.items():
        condition = set.intersection(*contexts[name]) - always
        info.condition = " and ".join(sorted(condition))
    return SpaceDescription(list(seen.values()), size, complete=complete)


def grid_points(spec: Spec, *, limit: int = MAX_GRID_POINTS) -> list[dict[str, Any]]:
    """Every distinct configuration of a finite space, as Optuna params (param -> value).

    A conditional parameter appears only in the configurations whose branch uses it, so the grid
    has exactly `describe_space(spec).size` points, with no duplicates from inactive values.

    Raises:
        ValueError: a parameter is a continuous range, or the grid exceeds `limit` points.
    """
    continuous = [p.name for p in describe_space(spec).params if math.isinf(p.n_values)]
    if continuous:
        raise ValueError(
            f"a grid needs a finite space, but {', '.join(continuous)} "
            f"{'is a continuous range' if len(continuous) == 1 else 'are continuous ranges'}; "
            "give each a step or a list of choices, or pick another sampler"
        )
    runs, complete = _walk(spec, expand_ranges=True, limit=limit)
    if not complete:
        raise ValueError(
            f"the grid has more than {limit:,} configurations; narrow the space or pick "
            "another sampler (tpe, random, qmc)"
        )
    return [recorder.values for recorder in runs]
