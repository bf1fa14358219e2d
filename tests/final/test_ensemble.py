"""The ensemble (final/ensemble.py) on tiny real networks: the weighted mean of its members'
probabilities, each member fed the batch normalised as it was trained, and refusals of what
cannot be one ensemble. (An exported ensemble end to end: tests/final/test_export.py.)"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from automl_clf.data.preprocess import Decoding, Preprocessing
from automl_clf.final.ensemble import Ensemble

DECODING = Decoding(image_size=8, channels=1, resize="squash")
PLAIN = Preprocessing(decoding=DECODING, mean=(0.5,), std=(0.25,))
OTHER = Preprocessing(decoding=DECODING, mean=(0.1,), std=(2.0,))


def member(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()


def test_it_returns_the_log_of_the_weighted_mean_probability() -> None:
    members = [member(0), member(1)]
    ensemble = Ensemble(members, [PLAIN, PLAIN], weights=[3.0, 1.0]).eval()
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        probabilities = [torch.softmax(m(x), dim=1) for m in members]
        expected = 0.75 * probabilities[0] + 0.25 * probabilities[1]
        out = ensemble(x)
    assert torch.allclose(out.exp(), expected, atol=1e-6)
    assert torch.allclose(out.exp().sum(dim=1), torch.ones(4), atol=1e-6)
    assert ensemble.weights == pytest.approx((0.75, 0.25))


def test_without_weights_each_member_counts_the_same() -> None:
    ensemble = Ensemble([member(0), member(1), member(2)], [PLAIN] * 3)
    assert ensemble.weights == pytest.approx((1 / 3,) * 3)


def test_each_member_sees_the_batch_normalised_as_it_was_trained() -> None:
    # The input follows member 0's normalisation; member 1 was trained on OTHER's.
    pixels = torch.rand(2, 1, 8, 8)
    x = (pixels - 0.5) / 0.25
    second = member(1)
    ensemble = Ensemble([member(0), second], [PLAIN, OTHER], weights=[1e-12, 1.0]).eval()
    with torch.no_grad():
        alone = torch.log_softmax(second((pixels - 0.1) / 2.0), dim=1)
        assert torch.allclose(ensemble(x), alone, atol=1e-5)


@pytest.mark.parametrize(
    ("n_pre", "weights", "message"),
    [
        (1, None, "one preprocessing per member, got 2 member(s) and 1"),
        (2, [1.0], "one positive weight per member"),
        (2, [1.0, 0.0], "one positive weight per member"),
        (2, [1.0, float("nan")], "one positive weight per member"),
    ],
    ids=["preprocessing missing", "weight missing", "zero weight", "NaN weight"],
)
def test_what_cannot_be_one_ensemble_is_refused(
    n_pre: int, weights: list[float] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Ensemble([member(0), member(1)], [PLAIN] * n_pre, weights=weights)


def test_members_that_decode_images_differently_are_refused() -> None:
    larger = PLAIN.model_copy(update={"decoding": DECODING.model_copy(update={"image_size": 16})})
    with pytest.raises(ValueError, match=r"member 1 decodes images as .*must share image size"):
        Ensemble([member(0), member(1)], [PLAIN, larger])
