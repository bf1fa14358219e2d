"""Test-time augmentation: average the softmax over a few deterministic views of each image.

Views work on the preprocessed tensor, so they add nothing to the export's preprocessing: the
exported model still predicts one plain view, and TTA is only reported beside that result.

    hflip   the image and its mirror image
    crops   the image, its 4 corner crops and its centre crop of CROP_FRACTION of the side, each
            resized back to the model's input size (bilinear)

With both, every crop is also mirrored (12 views).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from automl_clf.data.batches import eval_batches
from automl_clf.data.dataset import SplitArrays
from automl_clf.data.preprocess import Preprocessing
from automl_clf.train.metrics import EvalResult, summarise
from automl_clf.train.trainer import EVAL_BATCH_SIZE

CROP_FRACTION = 0.875  # side of a crop, as a share of the image side


def n_tta_views(views: Sequence[str]) -> int:
    """How many views `tta_views` makes (the plain one included): a pass over the test split
    each."""
    n = 1 + 5 * ("crops" in views)
    return n * 2 if "hflip" in views else n


def tta_views(x: torch.Tensor, views: Sequence[str]) -> list[torch.Tensor]:
    """The views of a batch (N, C, H, W), the plain batch first; see the module docstring."""
    out = [x]
    if "crops" in views:
        height, width = x.shape[-2:]
        ch, cw = max(1, round(height * CROP_FRACTION)), max(1, round(width * CROP_FRACTION))
        corners = [
            (0, 0),
            (0, width - cw),
            (height - ch, 0),
            (height - ch, width - cw),
            ((height - ch) // 2, (width - cw) // 2),
        ]
        for top, left in corners:
            crop = x[..., top : top + ch, left : left + cw]
            out.append(
                nn.functional.interpolate(
                    crop, size=(height, width), mode="bilinear", align_corners=False
                )
            )
    if "hflip" in views:
        out += [torch.flip(view, dims=[-1]) for view in out]
    return out


@torch.no_grad()
def evaluate_tta(
    model: nn.Module,
    data: SplitArrays,
    preprocessing: Preprocessing,
    device: torch.device,
    views: Sequence[str],
) -> EvalResult:
    """Metrics of the view-averaged probabilities; the loss is their mean negative log."""
    model.eval()
    batches = []
    for x, _ in eval_batches(data, EVAL_BATCH_SIZE, preprocessing):
        probs = [torch.softmax(model(v.to(device)).float(), dim=1) for v in tta_views(x, views)]
        batches.append(torch.stack(probs).mean(dim=0).cpu().numpy())
    probabilities = np.concatenate(batches)
    picked = probabilities[np.arange(len(data)), data.labels]
    loss = float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())
    return summarise(loss, probabilities, data.labels)
