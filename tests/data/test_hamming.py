"""The Hamming-distance index against brute force."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from automl_clf.data.hamming import pairs_within, popcount, popcount_by_bytes


def clustered_hashes(n: int, per: int, seed: int) -> np.ndarray:
    """n owners with `per` hashes each, all drawn near 40 centres: many pairs within a few
    bits, and uneven chunks, as real image hashes have."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2**64 - 1, size=40, dtype=np.uint64, endpoint=True)
    out = np.empty((n, per), dtype=np.uint64)
    for i in range(n):
        centre = centres[rng.integers(0, len(centres))]
        for k in range(per):
            bits = rng.choice(64, int(rng.integers(0, 14)), replace=False)
            out[i, k] = centre ^ np.uint64(sum(1 << int(b) for b in bits))
    return out


@pytest.mark.parametrize("radius", [0, 2, 8, 11])
def test_the_index_finds_exactly_the_pairs_brute_force_finds(radius: int) -> None:
    hashes = clustered_hashes(600, 4, seed=radius)
    owners = np.repeat(np.arange(len(hashes)), hashes.shape[1])
    query, owner, distance = pairs_within(hashes[:, 0], hashes.ravel(), owners, radius)
    every = popcount(hashes[:, 0][:, None, None] ^ hashes[None, :, :]).min(axis=-1)
    np.fill_diagonal(every, 99)  # a query never pairs with its own owner
    want_q, want_o = np.nonzero(every <= radius)
    assert len(want_q) > 0  # the set has pairs at every radius tested
    found = set(zip(query.tolist(), owner.tolist(), distance.tolist(), strict=True))
    assert len(found) == len(query)  # one row per (query, owner)
    want = zip(want_q.tolist(), want_o.tolist(), every[want_q, want_o].tolist(), strict=True)
    assert found == set(want)


@pytest.mark.parametrize("count", [popcount, popcount_by_bytes])
def test_popcount_counts_set_bits_of_64_bit_values(
    count: Callable[[np.ndarray], np.ndarray],
) -> None:
    values = np.array([[0, 1, 2**64 - 1], [0xF0F0, 1 << 63, 3]], dtype=np.uint64)
    assert count(values).tolist() == [[0, 1, 64], [8, 1, 2]]
