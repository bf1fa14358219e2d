"""albumentations transforms by name: `{name: ..., **args}` -> the transform, with unknown names
and arguments as errors.

The spec names transforms as albumentations does (`augment.transforms`, the policies of
spec/policies.py), so checking that one builds is a spec check (`check_transforms`, run at
validate time so a typo is not a failed trial); the augmentation itself (data/augment.py,
data/batch_augment.py) builds its pipelines with the same `build_transform`. albumentations
is imported on first use (it takes seconds), never when this module is.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # its import otherwise asks the network


def albumentations_module() -> Any:
    import albumentations

    return albumentations


def transform_names() -> list[str]:
    """Every albumentations transform that works on a plain image."""
    A = albumentations_module()
    return sorted(
        name
        for name in dir(A)
        if isinstance(getattr(A, name), type)
        and issubclass(getattr(A, name), A.BasicTransform)
        and not name.startswith("_")
        and name not in ("BasicTransform", "DualTransform", "ImageOnlyTransform", "Transform3D")
    )


def build_transform(entry: dict[str, Any]) -> Any:
    """One transform from `{name: ..., **args}`, with unknown names and arguments as errors.

    albumentations raises a bare KeyError for an unknown name and only warns about unknown
    arguments, so the name is checked here and `strict=True` turns the warning into an error.
    """
    A = albumentations_module()
    args = {k: v for k, v in entry.items() if k != "name"}
    name = entry["name"]
    names = transform_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown albumentations transform {name!r}.{hint}")
    try:
        return getattr(A, name)(**args, strict=True)
    except (TypeError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise ValueError(f"{name}: invalid arguments {args}: {first_line}") from None


def check_transforms(entries: list[dict[str, Any]]) -> None:
    """Build each transform once, so a bad name or argument fails at validate time."""
    for index, entry in enumerate(entries):
        try:
            build_transform(entry)
        except ValueError as exc:
            raise ValueError(f"transforms[{index}]: {exc}") from None
