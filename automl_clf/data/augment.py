"""Training-split augmentation with albumentations, kept behind this one module.

Augmentation runs on the decoded uint8 pixels (H, W, C) of training batches only: the batch
builders for val/test/predict (data/batches.py) take no augmentation at all, so augmenting
them is impossible by construction.

The named policies (`augment.policy`) are registered in spec/policies.py, each as its list of
albumentations transforms (built, and checked at validate time, by spec/transforms.py);
`hflip: true` adds a horizontal flip (p 0.5) to any of them. Trials run them batched
(data/batch_augment.py); a custom list runs here, image by image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from automl_clf.spec.config import AugmentConfig
from automl_clf.spec.policies import policy_transforms
from automl_clf.spec.transforms import albumentations_module, build_transform

HFLIP = {"name": "HorizontalFlip", "p": 0.5}


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
        A = albumentations_module()
        self.compose = A.Compose([build_transform(e) for e in entries], seed=seed, strict=True)

    def reseed(self, seed: int) -> None:
        """Restart the pipeline's random stream: augmentation is a function of (seed, batch)."""
        self.compose.set_random_seed(seed)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        out = np.stack([self.compose(image=image)["image"] for image in pixels])
        return out[..., None] if out.ndim == 3 else out  # keep (N, H, W, C) for 1 channel

    def to_dict(self) -> dict[str, Any]:
        """albumentations' own serialisation, stored with trials and exports."""
        return dict(albumentations_module().to_dict(self.compose))
