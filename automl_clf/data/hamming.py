"""Pairs of 64-bit hashes within a Hamming distance, found without comparing all pairs.

Multi-index hashing (Norouzi, Punjani and Fleet, "Fast search in Hamming space with
multi-index hashing", CVPR 2012): cut every hash into `m` chunks. Two hashes at most `r` bits
apart differ in at most `r // m` bits in one chunk at least (pigeonhole), so looking up, chunk by
chunk, every key within `r // m` bits of the query's chunk finds every pair within `r`; only
the hashes met that way are compared in full. The chunk count is chosen for the table's size:
for radius 8 over a million hashes, 3 chunks of 21-22 bits, 254 look-ups a chunk, each meeting
about one hash by chance. 100,000 queries against a million random hashes take seconds
(bench/near_duplicates.py), where all pairs would be 10^11 comparisons.

Why hand-written: the libraries that do this (FAISS's binary indexes, BK-trees in pure Python)
are either a large native dependency for one call, or orders of magnitude slower at this size;
this is fifty lines of numpy, and a test checks it against brute force.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

BITS = 64
MIN_CHUNKS = 3  # chunks of at most 22 bits: the table of where each key starts stays 16 MB
MAX_CHUNKS = 8
DENSE_RATIO = 16  # a table of key starts is built when the key space is at most this many
# times the hashes and queries: below that, searching each probe is cheaper than building it


def popcount(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64, as int64."""
    if hasattr(np, "bitwise_count"):  # numpy 2
        return np.bitwise_count(values).astype(np.int64)
    return popcount_by_bytes(values)


def popcount_by_bytes(values: np.ndarray) -> np.ndarray:
    """`popcount` for numpy 1, which lacks `bitwise_count`: a table of each byte's bits."""
    as_bytes = np.ascontiguousarray(values, dtype=np.uint64).view(np.uint8)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)
    return table[as_bytes].reshape(*np.shape(values), 8).sum(-1)


def pairs_within(
    queries: np.ndarray, table: np.ndarray, owners: np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (query, owner) whose hashes are at most `radius` bits apart.

    Args:
        queries: uint64 (n,), query i belonging to owner i.
        table: uint64 (m,), the hashes searched.
        owners: int (m,), whose each table hash is (an owner may have several).
        radius: the largest Hamming distance, bits.

    Returns:
        (query index, owner, distance) arrays, one row per (query, owner) pair at the smallest
        distance between the query and that owner's hashes; a query never pairs with its own
        owner.
    """
    queries = np.asarray(queries, dtype=np.uint64)
    table = np.asarray(table, dtype=np.uint64)
    owners = np.asarray(owners, dtype=np.int64)
    found_q, found_o, found_d = [], [], []
    chunks = _chunks(radius, len(table))
    within = radius // len(chunks)  # bits a chunk of a pair within `radius` differs in, at most
    for shift, bits in chunks:
        mask = np.uint64((1 << bits) - 1)
        keys = (table >> np.uint64(shift)) & mask
        order = np.argsort(keys, kind="stable")
        runs = _Runs(keys[order].astype(np.int64), bits, len(queries))
        query_keys = ((queries >> np.uint64(shift)) & mask).astype(np.int64)
        for flip in _flips(bits, within):
            lo, hi = runs.find(query_keys ^ flip)
            hit = np.flatnonzero(hi > lo)
            if not hit.size:
                continue
            counts = hi[hit] - lo[hit]
            query = np.repeat(hit, counts)
            first = np.repeat(lo[hit] - (np.cumsum(counts) - counts), counts)
            entry = order[first + np.arange(int(counts.sum()))]
            distance = popcount(queries[query] ^ table[entry])
            keep = (distance <= radius) & (owners[entry] != query)
            found_q.append(query[keep])
            found_o.append(owners[entry][keep])
            found_d.append(distance[keep])
    if not found_q:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    query, owner, distance = (np.concatenate(x) for x in (found_q, found_o, found_d))
    # one row per (query, owner): the smallest distance (rows are found once per chunk met)
    order = np.lexsort((distance, owner, query))
    query, owner, distance = query[order], owner[order], distance[order]
    first = np.ones(len(query), dtype=bool)
    first[1:] = (query[1:] != query[:-1]) | (owner[1:] != owner[:-1])
    return query[first], owner[first], distance[first]


class _Runs:
    """Where each key's run lies in a sorted array of `bits`-bit keys. A large table gets an
    array of every key's start (one look-up per probe, 16 MB at 22 bits); a small one is
    searched, which is cheaper than building that array."""

    def __init__(self, sorted_keys: np.ndarray, bits: int, n_queries: int) -> None:
        self.keys = sorted_keys
        self.starts: np.ndarray | None = None
        if (1 << bits) <= DENSE_RATIO * (len(sorted_keys) + n_queries):
            every = np.arange((1 << bits) + 1, dtype=np.int64)
            self.starts = np.searchsorted(sorted_keys, every).astype(np.int64)

    def find(self, probe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(first, past the last) position of each probed key's run; equal when absent."""
        if self.starts is not None:
            return self.starts[probe], self.starts[probe + 1]
        return (
            np.searchsorted(self.keys, probe, "left"),
            np.searchsorted(self.keys, probe, "right"),
        )


def _chunks(radius: int, n_table: int) -> list[tuple[int, int]]:
    """(shift, bits) of each chunk: the count that makes the fewest look-ups and chance meetings
    for a table of `n_table` hashes."""

    def cost(m: int) -> float:
        bits = BITS // m
        probes = sum(math.comb(bits, k) for k in range(radius // m + 1))
        return m * probes * (1.0 + n_table / 2.0**bits)

    m = min(range(MIN_CHUNKS, MAX_CHUNKS + 1), key=cost)
    sizes = [BITS // m + (1 if i < BITS % m else 0) for i in range(m)]
    shifts = [sum(sizes[i + 1 :]) for i in range(m)]
    return list(zip(shifts, sizes, strict=True))


def _flips(bits: int, within: int) -> list[int]:
    """Every `bits`-bit mask with at most `within` bits set: the keys to look up around one."""
    masks = [0]
    for k in range(1, within + 1):
        masks += [sum(1 << i for i in chosen) for chosen in itertools.combinations(range(bits), k)]
    return masks
