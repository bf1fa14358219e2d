"""The named augmentation policies: `augment.policy` name -> its albumentations transforms.

A policy is one function of `magnitude`, registered here once: the spec accepts its name
(`spec/config.py`'s `PolicyName` and the JSON Schema list every registered one), the training
batches run it batched on the device (`data/batch_augment.py` implements each transform it
uses), and the tests check each policy both ways (`tests/data/test_augment.py`).

At `magnitude: 1` (shifts relative to the image size; p = probability per image); `magnitude`
multiplies every shift, scale range, angle, brightness/contrast limit and hole size, never a
probability, so "how strong" is one searchable number:

- none: nothing.
- light: Affine (shift ±6%, scale 0.95–1.05, rotate ±8°; p 0.5).
- medium: Affine (shift ±10%, scale 0.9–1.1, rotate ±15°; p 0.7); brightness/contrast ±0.2
  (p 0.5).
- heavy: Affine (shift ±12%, scale 0.85–1.15, rotate ±20°, shear ±8°; p 0.9);
  brightness/contrast ±0.3 (p 0.7); one cut-out hole of 15–30% per side (p 0.5).

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
