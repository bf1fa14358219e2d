"""The training split's normalisation statistics (data/preprocess.py `mean_std`): exact against
numpy's float64 mean and std, over several histogram rounds and a memory-mapped array."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from automl_clf.data.preprocess import STATS_CHUNK, mean_std


@pytest.mark.parametrize("channels", [1, 3])
def test_mean_std_matches_numpy_over_several_rounds(channels: int, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (STATS_CHUNK * 2 + 5, 6, 6, channels), dtype=np.uint8)
    pixels[..., 0] //= 3  # channels that differ
    flat = pixels.reshape(-1, channels).astype(np.float64) / 255.0
    mean, std = mean_std(pixels)
    assert mean == pytest.approx(tuple(flat.mean(axis=0)), abs=1e-12)
    assert std == pytest.approx(tuple(flat.std(axis=0)), abs=1e-12)
    mapped = np.lib.format.open_memmap(tmp_path / "p.npy", "w+", np.uint8, pixels.shape)
    mapped[:] = pixels
    assert mean_std(mapped) == (mean, std)  # read round by round from disk


def test_a_constant_channel_gets_a_std_it_can_be_divided_by() -> None:
    pixels = np.full((4, 5, 5, 1), 7, np.uint8)
    (mean,), (std,) = mean_std(pixels)
    assert mean == pytest.approx(7 / 255) and std == 1e-3
