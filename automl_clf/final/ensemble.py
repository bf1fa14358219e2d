"""Several trained models as one: the weighted mean of their softmax probabilities
(`final.ensemble: K`; the weights are chosen on validation, final/selection.py).

The ensemble is a plain `nn.Module`, so everything downstream treats it like one model: the test
evaluation and TTA, the Predictor, and the extra formats (TorchScript and ONNX trace its forward,
so `model.pt` and `model.onnx` are the averaged graph, not member 0 alone).

Its input is the batch preprocessed as the export's top-level `preprocessing` says (member 0's).
Members may normalise differently (the plain CNN with the training split's mean/std, a timm
backbone with the mean/std its pretrained weights expect), so each member first re-normalises
with a fixed per-channel affine: x_k = (x * std_0 + mean_0 - mean_k) / std_k, the batch member k
was trained on. Members share the decoding (size, channels, resize): one decoded image feeds all.

It returns log(sum_k w_k softmax(member_k(x_k))) with the weights summing to 1 (equal when not
given, as exports made before the selection were): the softmax of that is exactly the averaged
probability, its argmax is the ensemble's prediction, and cross-entropy on it is the ensemble's
log loss, so code written for logits needs no change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from automl_clf.data.preprocess import Decoding, Preprocessing


class Ensemble(nn.Module):
    """The weighted mean of `members`' softmax probabilities, as log-probabilities; see the
    module docstring. `preprocessing[k]` is what member k was trained with; the input follows
    `preprocessing[0]`; `weights[k]` > 0 (normalised to sum to 1; None: equal)."""

    scales: torch.Tensor  # (K, 1, C, 1, 1) buffers: fixed, recomputed from model.json on loading
    shifts: torch.Tensor
    log_weights: torch.Tensor  # (K, 1, 1)

    def __init__(
        self,
        members: Sequence[nn.Module],
        preprocessing: Sequence[Preprocessing],
        weights: Sequence[float] | None = None,
    ):
        super().__init__()
        if len(members) != len(preprocessing) or not members:
            raise ValueError(
                f"an ensemble needs one preprocessing per member, got {len(members)} member(s) "
                f"and {len(preprocessing)}"
            )
        weights = [1.0] * len(members) if weights is None else list(weights)
        if len(weights) != len(members) or not all(w > 0 and math.isfinite(w) for w in weights):
            raise ValueError(
                f"an ensemble needs one positive weight per member, got {weights} for "
                f"{len(members)} member(s)"
            )
        check_same_decoding([pre.decoding for pre in preprocessing])
        self.members = nn.ModuleList(members)
        mean0, std0 = _channels(preprocessing[0].mean), _channels(preprocessing[0].std)
        scales, shifts = [], []
        for pre in preprocessing:
            mean, std = _channels(pre.mean), _channels(pre.std)
            scales.append(std0 / std)
            shifts.append((mean0 - mean) / std)
        self.register_buffer("scales", torch.stack(scales).float(), persistent=False)
        self.register_buffer("shifts", torch.stack(shifts).float(), persistent=False)
        share = torch.tensor(weights, dtype=torch.float64) / sum(weights)
        self.register_buffer("log_weights", share.log().float().view(-1, 1, 1), persistent=False)
        self.weights = tuple(float(w) for w in share)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_probs = [
            torch.log_softmax(member(x * self.scales[k] + self.shifts[k]).float(), dim=1)
            for k, member in enumerate(self.members)
        ]
        return torch.logsumexp(torch.stack(log_probs) + self.log_weights, dim=0)


def check_same_decoding(decodings: Sequence[Decoding]) -> None:
    """Raise ValueError unless every member decodes images the same way (one input for all)."""
    first = decodings[0]
    for k, decoding in enumerate(decodings[1:], start=1):
        if decoding != first:
            raise ValueError(
                f"member {k} decodes images as {decoding.model_dump()}, member 0 as "
                f"{first.model_dump()}; an ensemble's members must share image size, channels "
                "and resize"
            )


def _channels(values: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).view(1, -1, 1, 1)
