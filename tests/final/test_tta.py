"""Test-time augmentation's views (final/tta.py): how many there are, that the plain batch comes
first, and what each view holds."""

from __future__ import annotations

import pytest
import torch

from automl_clf.final.tta import CROP_FRACTION, n_tta_views, tta_views


@pytest.mark.parametrize(
    ("views", "n"), [([], 1), (["hflip"], 2), (["crops"], 6), (["hflip", "crops"], 12)]
)
def test_the_number_of_views_is_what_it_makes(views: list[str], n: int) -> None:
    x = torch.rand(3, 2, 16, 16)
    made = tta_views(x, views)
    assert n_tta_views(views) == len(made) == n
    assert made[0] is x  # the plain view first: what the export predicts
    assert all(view.shape == x.shape for view in made)  # crops are resized back


def test_the_mirror_view_is_the_image_flipped_left_to_right() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    plain, mirrored = tta_views(x, ["hflip"])
    assert torch.equal(mirrored[0, 0, 0], torch.tensor([3.0, 2.0, 1.0, 0.0]))
    assert torch.equal(torch.flip(mirrored, dims=[-1]), plain)


def test_the_crops_are_the_corners_and_the_centre() -> None:
    # An image whose top-left corner is bright: the top-left crop keeps more of it.
    x = torch.zeros(1, 1, 16, 16)
    x[..., :2, :2] = 1.0
    _, top_left, top_right, bottom_left, bottom_right, centre = tta_views(x, ["crops"])
    assert top_left.sum() > x.sum()  # enlarged: 14 px of 16 resized back to 16
    for view in (top_right, bottom_left, bottom_right, centre):
        assert view.sum() < top_left.sum()
    assert round(16 * CROP_FRACTION) == 14
