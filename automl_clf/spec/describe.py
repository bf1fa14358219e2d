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

from automl_clf.spec.models import Spec
from automl_clf.spec.resolve import resolve
from automl_clf.spec.space import CategoricalValue

MAX_BRANCHES = 20_000  # resolver runs; beyond this the size is reported as a lower bound


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
    """A ParamSource that answers from a plan (categorical name -> choice index), else first."""

    plan: dict[str, int]
    # (param, (index, label) of the choice taken, or None for a range)
    calls: list[tuple[ParamInfo, tuple[int, str] | None]] = field(default_factory=list)

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        n = math.inf if step is None else math.floor((high - low) / step + 1e-9) + 1
        scale = ", log" if log else (f", step {step:g}" if step else "")
        self.calls.append((ParamInfo(name, "float", f"[{low:g}, {high:g}{scale}]", n), None))
        return low

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        scale = ", log" if log else (f", step {step}" if step > 1 else "")
        n = (high - low) // step + 1
        self.calls.append((ParamInfo(name, "int", f"[{low}, {high}{scale}]", n), None))
        return low

    def suggest_categorical(
        self, name: str, choices: Sequence[CategoricalValue]
    ) -> CategoricalValue:
        index = self.plan.get(name, 0)
        detail = "{" + ", ".join(str(c) for c in choices) + "}"
        info = ParamInfo(name, "categorical", detail, len(choices))
        self.calls.append((info, (index, str(choices[index]))))
        return choices[index]


def describe_space(spec: Spec) -> SpaceDescription:
    """Walk every categorical branch of the spec's search space once."""
    seen: dict[str, ParamInfo] = {}
    contexts: dict[str, list[set[str]]] = {}  # param -> assignments before it, one set per run
    all_runs: list[set[str]] = []
    size = 0.0
    stack: list[dict[str, int]] = [{}]
    n_runs = 0
    while stack and n_runs < MAX_BRANCHES:
        plan = stack.pop()
        recorder = _Recorder(plan)
        resolve(spec, recorder)
        n_runs += 1
        leaf_size = 1.0
        assignments: set[str] = set()
        prefix: dict[str, int] = {}  # the choices this run made so far
        for info, picked in recorder.calls:
            seen.setdefault(info.name, info)
            contexts.setdefault(info.name, []).append(set(assignments))
            if picked is None:
                leaf_size *= info.n_values
                continue
            index, label = picked
            if info.name not in plan:  # a new branch point: visit its other choices later
                stack.extend({**prefix, info.name: i} for i in range(1, int(info.n_values)))
            prefix[info.name] = index
            assignments.add(f"{info.name}={label}")
        all_runs.append(assignments)
        size += leaf_size
    always = set.intersection(*all_runs) if all_runs else set()
    for name, info in seen.items():
        condition = set.intersection(*contexts[name]) - always
        info.condition = " and ".join(sorted(condition))
    return SpaceDescription(list(seen.values()), size, complete=not stack)
