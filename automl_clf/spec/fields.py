"""Value types shared by the spec's sections: bounded numbers, seeds, paths; and which pass of
validation is running (`library_checks`).

A bound here holds for a literal, both ends of a range and every choice alike (see
`spec/space.py`'s `Tunable`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationInfo

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
OddKernel = Annotated[int, Field(ge=1, le=11)]
# What numpy, torch and Optuna take as a seed (0 to 2^32 - 1), with room for the trial number
# or seed index that is added to it.
Seed = Annotated[int, Field(ge=0, lt=2**31)]


def resolve_path(value: Path | str, info: ValidationInfo) -> Path:
    """Resolve a spec path against the spec file's folder (validation context `base_dir`)."""
    path = Path(value).expanduser()
    base = (info.context or {}).get("base_dir")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return path.resolve()


# Validation context key: True in parse_spec's first pass (spec/load.py), which checks the
# structure only (fields, types, ranges, choices, cross-field rules, names) without importing
# torch, timm, albumentations or scikit-learn, so a typo is reported at once.
STRUCTURE_ONLY = "structure_only"


def library_checks(info: ValidationInfo) -> bool:
    """Whether this validation runs the checks that need a library imported (seconds): an
    albumentations list built, a Hub repository's architecture read from timm. parse_spec's
    second pass does, as does any validation without its `STRUCTURE_ONLY` context."""
    return not (info.context or {}).get(STRUCTURE_ONLY, False)
