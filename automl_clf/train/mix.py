"""MixUp and CutMix: batch-level augmentation of training batches (Zhang et al. 2018; Yun et al.
2019). A batch is mixed with a shuffled copy of itself; the loss mixes the two labels' losses with
the same weight, so it works with class weights and label smoothing unchanged.

Why hand-written: the standard recipes are a dozen lines, and timm's `Mixup` works on one-hot
targets with its own loss, which would bypass our class weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from automl_clf.errors import TrialFailed
from automl_clf.spec.config import AugmentConfig


@dataclass(frozen=True)
class MixedBatch:
    images: torch.Tensor
    labels: torch.Tensor  # the original labels
    partner_labels: torch.Tensor  # labels of the images mixed in
    weight: float  # share of the original image, in [0, 1]


class BatchMixer:
    """Decides per batch: MixUp with probability `mixup`, CutMix with `cutmix`, else nothing."""

    def __init__(self, config: AugmentConfig) -> None:
        if config.mixup + config.cutmix > 1 + 1e-9:  # the spec forbids it; never cut a share
            raise TrialFailed(
                f"augment: mixup {config.mixup:g} + cutmix {config.cutmix:g} > 1: the shares of "
                "batches cannot both be honoured"
            )
        self.config = config
        self.rng = np.random.default_rng(0)

    @property
    def active(self) -> bool:
        return self.config.mixup > 0 or self.config.cutmix > 0

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> MixedBatch | None:
        draw = self.rng.random()
        cfg = self.config
        if draw < cfg.mixup and cfg.mixup_alpha:
            return self._mixup(images, labels, cfg.mixup_alpha)
        if draw < cfg.mixup + cfg.cutmix and cfg.cutmix_alpha:
            return self._cutmix(images, labels, cfg.cutmix_alpha)
        return None

    def _partners(self, images: torch.Tensor) -> torch.Tensor:
        """A shuffled order of the batch, on its device (copied there without waiting)."""
        order = torch.from_numpy(self.rng.permutation(len(images)))
        return order.to(images.device, non_blocking=True)

    def _mixup(self, images: torch.Tensor, labels: torch.Tensor, alpha: float) -> MixedBatch:
        weight = float(self.rng.beta(alpha, alpha))
        partner = self._partners(images)
        mixed = weight * images + (1.0 - weight) * images[partner]
        return MixedBatch(mixed, labels, labels[partner], weight)

    def _cutmix(self, images: torch.Tensor, labels: torch.Tensor, alpha: float) -> MixedBatch:
        height, width = images.shape[-2:]
        share = float(self.rng.beta(alpha, alpha))  # of the image to replace is 1 - share
        cut_h, cut_w = int(height * np.sqrt(1 - share)), int(width * np.sqrt(1 - share))
        cy, cx = int(self.rng.integers(height)), int(self.rng.integers(width))
        top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
        left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
        partner = self._partners(images)
        mixed = images.clone()
        mixed[..., top:bottom, left:right] = images[partner][..., top:bottom, left:right]
        kept = 1.0 - (bottom - top) * (right - left) / (height * width)  # the box as cut
        return MixedBatch(mixed, labels, labels[partner], kept)
