"""The named augmentation policies: `augment.policy` name -> its albumentations transforms.

A policy is one function of `magnitude`, registered here once: the spec accepts its name
(`spec/config.py`'s `PolicyName` and the JSON Schema list every registered one), the training
batches run it batched on the device (`data/batch_augment.py` implements each transform it
uses), and the tests check each policy both ways (`tests/data/test_augment.py`).

`magnitude` multiplies every shift, scale range, angle, brightness/contrast limit and hole
size, never a probability, so "how strong" is one searchable number. What each policy does at
`magnitude: 1` is described from its transforms themselves (`describe_policy`; the spec's
field description, the JSON Schema and docs/spec-reference.md read it), so a description
cannot drift from what runs:

    none     nothing
    light    Affine (shift ±6%, scale 0.95–1.05, rotate ±8°; p 0.5)
    medium   … (`autoclf schema --markdown` lists them all)

`augment.hflip: true` adds a horizontal flip (p 0.5) to any policy (`data/augment.py`).

To add a policy: one function below, decorated `@POLICIES.register("name")`, using transforms
that `data/batch_augment.py` implements (its `KERNELS`); its tests follow from the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from automl_clf.spec.registry import Registry

Transforms = list[dict[str, Any]]  # albumentations entries: {name: Affine, p: 0.5, ...}
POLICIES: Registry[Callable[[float], Transforms]] = Registry(
    "augmentation policy", "augmentation policies"
)


def _affine(
    m: float, shift: float, scale: float, rotate: float, p: float, shear: float = 0.0
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "Affine",
        "translate_percent": (-shift * m, shift * m),
        "scale": (1 - scale * m, 1 + scale * m),
        "rotate": (-rotate * m, rotate * m),
        "p": p,
    }
    if shear:
        entry["shear"] = (-shear * m, shear * m)
    return entry


def _brightness_contrast(m: float, limit: float, p: float) -> dict[str, Any]:
    return {
        "name": "RandomBrightnessContrast",
        "brightness_limit": min(limit * m, 1.0),
        "contrast_limit": min(limit * m, 1.0),
        "p": p,
    }


@POLICIES.register("none")
def _none(m: float) -> Transforms:
    return []


@POLICIES.register("light")
def _light(m: float) -> Transforms:
    return [_affine(m, 0.06, 0.05, 8, p=0.5)]


@POLICIES.register("medium")
def _medium(m: float) -> Transforms:
    return [_affine(m, 0.10, 0.10, 15, p=0.7), _brightness_contrast(m, 0.2, p=0.5)]


@POLICIES.register("heavy")
def _heavy(m: float) -> Transforms:
    return [
        _affine(m, 0.12, 0.15, 20, p=0.9, shear=8),
        _brightness_contrast(m, 0.3, p=0.7),
        {
            "name": "CoarseDropout",
            "num_holes_range": (1, 1),
            "hole_height_range": (min(0.15 * m, 0.9), min(0.3 * m, 0.95)),
            "hole_width_range": (min(0.15 * m, 0.9), min(0.3 * m, 0.95)),
            "p": 0.5,
        },
    ]


def policy_transforms(policy: str, magnitude: float = 1.0) -> Transforms:
    """The named policy's transforms, every magnitude (not probability) × `magnitude`."""
    return POLICIES[policy](magnitude)


def describe_policy(policy: str) -> str:
    """What the named policy does at magnitude 1, in words, from its own transforms: e.g.
    "Affine (shift ±6%, scale 0.95–1.05, rotate ±8°; p 0.5)"; "nothing" for none."""
    return "; ".join(describe_transform(t) for t in policy_transforms(policy)) or "nothing"


def policy_descriptions() -> str:
    """Every registered policy with its description, for the spec's field description."""
    return "; ".join(f"{name}: {describe_policy(name)}" for name in POLICIES.kinds)


def describe_transform(entry: dict[str, Any]) -> str:
    """One albumentations entry in words: the three the policies use spelled out, any other
    as its name and arguments."""
    args = {k: v for k, v in entry.items() if k not in ("name", "p")}
    p = f"p {_num(entry['p'])}" if "p" in entry else ""
    if entry["name"] == "Affine":
        parts = [
            f"shift ±{_num(100 * args['translate_percent'][1])}%",
            f"scale {_num(args['scale'][0])}–{_num(args['scale'][1])}",
            f"rotate ±{_num(args['rotate'][1])}°",
        ]
        if "shear" in args:
            parts.append(f"shear ±{_num(args['shear'][1])}°")
        return f"Affine ({', '.join(parts)}; {p})"
    if entry["name"] == "RandomBrightnessContrast" and (
        args.get("brightness_limit") == args.get("contrast_limit")
    ):
        return f"brightness/contrast ±{_num(args['brightness_limit'])} ({p})"
    if entry["name"] == "CoarseDropout" and tuple(args.get("num_holes_range", ())) == (1, 1):
        low, high = args["hole_height_range"]
        return f"one cut-out hole of {_num(100 * low)}–{_num(100 * high)}% per side ({p})"
    written = ", ".join(f"{k}={v}" for k, v in args.items())
    return f"{entry['name']}({written})" + (f" ({p})" if p else "")


def _num(value: float) -> str:
    """A magnitude as people write it: 0.95, 8, 1.15 (no float noise)."""
    return f"{round(float(value), 4):g}"
