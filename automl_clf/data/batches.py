"""Batches for training and evaluation from decoded pixels.

There are two builders and only the training one takes an augmenter: val, test and predict
batches are the preprocessing output and nothing else, by construction.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from automl_clf.data.augment import Augmenter
from automl_clf.data.dataset import SplitArrays
from automl_clf.data.preprocess import Preprocessing

Batch = tuple[torch.Tensor, torch.Tensor]  # images float (N, C, H, W), labels int64 (N,)


def train_batches(
    data: SplitArrays,
    batch_size: int,
    preprocessing: Preprocessing,
    augmenter: Augmenter | None,
    generator: torch.Generator,
) -> Iterator[Batch]:
    """One epoch of shuffled, augmented, normalised training batches.

    A final batch of a single image is dropped: batch norm cannot train on one image.
    """
    n = len(data)
    order = torch.randperm(n, generator=generator).numpy()
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        if len(index) < 2 and n > 1:
            break
        pixels = data.pixels[index]
        if augmenter is not None:
            pixels = augmenter(pixels)
        yield preprocessing.to_tensor(pixels), torch.from_numpy(data.labels[index])


def eval_batches(
    data: SplitArrays, batch_size: int, preprocessing: Preprocessing
) -> Iterator[Batch]:
    """The split in order, preprocessed exactly as `predict` preprocesses a file."""
    for start in range(0, len(data), batch_size):
        stop = start + batch_size
        yield (
            preprocessing.to_tensor(data.pixels[start:stop]),
            torch.from_numpy(data.labels[start:stop]),
        )
