"""Training-split augmentation with albumentations, kept behind this one module.

Augmentation runs on the decoded uint8 pixels (H, W, C) of training batches only: the batch
builders for val/test/predict (data/batches.py) take no augmentation at all, so augmenting
them is impossible by construction.

The named policies (`augment.policy`) are registered in spec/policies.py, each as its list of
albumentations transforms; `hflip: true` adds a horizontal flip (p 0.5) to any of them. Trials run
them batched (data/batch_augment.py); a custom list runs here, image by image.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # its import otherwise asks the network

from automl_clf.spec.config import AugmentConfig
from automl_clf.spec.policies import policy_transforms

HFLIP = {"name": "HorizontalFlip", "p": 0.5}


def _albumentations() -> Any:
    import albumentations

    return albumentations


def transform_names() -> list[str]:
    """Every albumentations transform that works on a plain image."""
    A = _albumentations()
    return sorted(
        name
        for name in dir(A)
        if isinstance(getattr(A, name), type)
        and issubclass(getattr(A, name), A.BasicTransform)
        and not name.startswith("_")
        and name not in ("BasicTransform", "DualTransform", "ImageOnlyTransform", "Transform3D")
    )


def _build_one(entry: dict[str, Any]) -> Any:
    """One transform from `{name: ..., **args}`, with unknown names and arguments as errors.

    albumentations raises a bare KeyError for an unknown name and only warns about unknown
    arguments, so the name is checked here and `strict=True` turns the warning into an error.
    """
    A = _albumentations()
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
            _build_one(entry)
        except ValueError as exc:
            raise ValueError(f"transforms[{index}]: {exc}") from None


def transform_list(config: AugmentConfig) -> list[dict[str, Any]]:
    """The resolved list of transforms a trial applies."""
    if config.transforms is not None:
        return [dict(t) for t in config.transforms]
    return [
        *policy_transforms(config.policy, config.magnitude),
        *([HFLIP] if config.hflip else []),
    ]


class Augmenter:
    """Applies one seeded albumentations pipeline to batches of uint8 (N, H, W, C) pixels."""

    def __init__(self, entries: list[dict[str, Any]], seed: int) -> None:
        A = _albumentations()
        self.compose = A.Compose([_build_one(e) for e in entries], seed=seed, strict=True)

    def reseed(self, seed: int) -> None:
        """Restart the pipeline's random stream: augmentation is a function of (seed, batch)."""
        self.compose.set_random_seed(seed)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        out = np.stack([self.compose(image=image)["image"] for image in pixels])
        return out[..., None] if out.ndim == 3 else out  # keep (N, H, W, C) for 1 channel

    def to_dict(self) -> dict[str, Any]:
        """albumentations' own serialisation, stored with trials and exports."""
        return dict(_albumentations().to_dict(self.compose))
