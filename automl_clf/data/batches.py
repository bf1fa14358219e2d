"""Batches for training and evaluation from decoded pixels.

Two builders, and only the training one takes augmentation: val, test and predict batches are the
preprocessing output and nothing else, by construction.

Training batches come from the in-memory pixels in this process, or, for a streamed split
(`data.loading: stream`), from DataLoader workers (spawn context, without the caller's main
script: `ScriptFreeSpawn`) that read the on-disk store.
Either way the batch order is drawn in this process from one seeded generator, so a run is
reproducible. The named policies augment whole batches on the training device
(data/batch_augment.py); a custom albumentations list augments image by image (in the workers,
when there are any).
"""

from __future__ import annotations

import multiprocessing.context
import sys
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from automl_clf.data.augment import Augmenter
from automl_clf.data.batch_augment import BatchAugmenter
from automl_clf.data.dataset import SplitArrays
from automl_clf.data.preprocess import Preprocessing
from automl_clf.machine import usable_cpus

Batch = tuple[torch.Tensor, torch.Tensor]  # images float (N, C, H, W), labels int64 (N,)
OnStep = Callable[[int, int], None]  # (batches of the epoch done, batches per epoch)
STEP_REPORT_S = 0.5  # `TrainBatches.on_step` hears at most this often (seconds)


def oversampling_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-image sampling weights that draw every class equally often (1 / class count)."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    return 1.0 / np.maximum(counts[labels], 1.0)


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    """Training batches per epoch: a last batch of one image is dropped (batch norm cannot
    train on it)."""
    return max(1, n_images // batch_size + (n_images % batch_size > 1))


class _ScriptFreeProcess(multiprocessing.context.SpawnProcess):
    """A spawned process that does not run its caller's main script again.

    Spawn prepares a child by importing the parent's `__main__` (from its file or module name)
    unless it has neither, as in an interactive session: a plain script calling
    `automl_clf.run(...)` without an `if __name__ == "__main__":` guard ran the whole job again
    inside each DataLoader worker (multiprocessing's spawn.get_preparation_data). While the
    child starts, `__main__` is a bare module, so the child imports nothing of the script; what
    it runs (torch's worker loop, `_AugmentedRows`) lives in importable modules.
    """

    def start(self) -> None:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            super().start()
        finally:
            sys.modules["__main__"] = main


class ScriptFreeSpawn(multiprocessing.context.SpawnContext):
    """The spawn context, its processes started without the caller's main script."""

    Process = _ScriptFreeProcess


class TrainBatches:
    """Epochs of shuffled (or class-balanced oversampled), augmented, normalised batches.

    Args:
        augment: albumentations entries (data/augment.py `transform_list`); empty for none.
        seed: seeds the batch order and the augmentation.
        oversample: draw images with replacement, every class equally often.
        workers: DataLoader workers for a streamed split; 0 reads in this process.
        batched: augment whole batches with data/batch_augment.py (the named policies) rather
            than image by image with albumentations.
        device: where batches are augmented and returned.

    A final batch of a single image is dropped: batch norm cannot train on one image.

    `on_step`, when set, hears (batches done, batches per epoch) at most every `STEP_REPORT_S`
    seconds while an epoch runs: a display's sign of life inside a long epoch. It is called
    when the trainer asks for the next batch, so it costs a clock read per batch and never
    waits for the device.
    """

    def __init__(
        self,
        data: SplitArrays,
        batch_size: int,
        preprocessing: Preprocessing,
        augment: list[dict[str, Any]],
        seed: int,
        *,
        n_classes: int,
        oversample: bool = False,
        workers: int = 0,
        batched: bool = False,
        device: torch.device | None = None,
    ) -> None:
        self.data = data
        self.device = device
        self.batch_size = batch_size
        self.preprocessing = preprocessing
        self.seed = seed
        self.current_epoch = 0
        self.on_step: OnStep | None = None
        self.weights = oversampling_weights(data.labels, n_classes) if oversample else None
        self.batch_augmenter = BatchAugmenter(augment) if augment and batched else None
        per_image = augment if augment and not batched else []
        self.augmenter = Augmenter(per_image, seed) if per_image and workers == 0 else None
        self.loader: torch.utils.data.DataLoader[Any] | None = None
        if workers > 0:
            self.loader = torch.utils.data.DataLoader(
                _AugmentedRows(data, per_image, seed),
                batch_sampler=_EpochOrder(self),
                num_workers=workers,
                multiprocessing_context=ScriptFreeSpawn(),
                persistent_workers=True,
                collate_fn=_stack,
                # Its own generator: starting the workers otherwise draws a seed from torch's
                # global RNG, shifting every dropout mask against the in-memory path (and
                # against a run resumed at a later epoch).
                generator=torch.Generator().manual_seed(seed),
            )

    def __len__(self) -> int:
        """Batches per epoch."""
        return steps_per_epoch(len(self.data), self.batch_size)

    def epoch_seed(self, epoch: int) -> int:
        """Each epoch's order and augmentation depend on (seed, epoch) only, so a run resumed
        at any epoch continues exactly as the uninterrupted run would have."""
        return (self.seed * 1_000_003 + epoch) % 2**31

    def order(self, epoch: int) -> list[np.ndarray]:
        """One epoch's batches of image indices."""
        n = len(self.data)
        generator = torch.Generator().manual_seed(self.epoch_seed(epoch))
        if self.weights is None:
            order = torch.randperm(n, generator=generator).numpy()
        else:
            weights = torch.as_tensor(self.weights)
            order = torch.multinomial(weights, n, replacement=True, generator=generator).numpy()
        batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        return [b for b in batches if len(b) > 1 or n == 1]

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of `epoch` (1-based), on the device."""
        batches = self._batches(epoch)
        if self.on_step is None:
            return batches
        return reporting_steps(batches, len(self), self.on_step)

    def _batches(self, epoch: int) -> Iterator[Batch]:
        self.current_epoch = epoch
        seed = self.epoch_seed(epoch)
        generator = torch.Generator().manual_seed(seed)
        if self.augmenter is not None:
            self.augmenter.reseed(seed)
        if self.loader is not None:
            for pixels, labels in self.loader:
                yield self._finish(pixels, torch.from_numpy(labels), generator)
            return
        for index in self.order(epoch):
            pixels = self.data.pixels[index]
            if self.augmenter is not None:
                pixels = self.augmenter(pixels)
            yield self._finish(pixels, torch.from_numpy(self.data.labels[index]), generator)

    def _finish(
        self, pixels: np.ndarray, labels: torch.Tensor, generator: torch.Generator
    ) -> Batch:
        """uint8 pixels -> [0, 1] on the device -> batched augmentation -> normalised."""
        x = self.preprocessing.scale(pixels, self.device)
        if self.batch_augmenter is not None:
            x = channels_last(self.batch_augmenter(x, generator))
        return self.preprocessing.normalize(x), labels.to(x.device)

    def close(self) -> None:
        """Stop the worker processes, if any (dropping the loader shuts its workers down)."""
        self.loader = None


def reporting_steps(
    batches: Iterator[Batch],
    n_steps: int,
    on_step: OnStep,
    every_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Batch]:
    """`batches` as they are, telling `on_step(done, n_steps)` at most every `every_s` seconds
    (default `STEP_REPORT_S`; `done`: the batches handed out before the one handed out now)."""
    every_s = STEP_REPORT_S if every_s is None else every_s
    last = clock()
    for done, batch in enumerate(batches):
        now = clock()
        if now - last >= every_s:
            on_step(done, n_steps)
            last = now
        yield batch


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """`x` laid out as (N, H, W, C) in memory, as the decoded pixels are.

    Convolutions pick their kernels by the input's layout, and the channels-last ones are the
    faster here (CPU and CUDA alike): measured 1.3–1.5× per step on the plain CNN. Augmentation
    returns the (N, C, H, W) layout, so it goes back. `Tensor.contiguous(memory_format=...)`
    cannot be used: with one channel both layouts count as contiguous and it changes nothing.
    """
    out = torch.empty_like(x, memory_format=torch.channels_last)
    if out.dim() == 4 and out.shape[1] == 1:  # make the layout explicit for one channel too
        _, _, h, w = out.shape
        out = out.as_strided(out.shape, (h * w, 1, w, 1))
    return out.copy_(x)


class _EpochOrder(torch.utils.data.Sampler[list[tuple[int, int]]]):
    """The batch sampler of the worker path: the same seeded order as the in-process path, each
    index paired with the epoch's seed so workers can seed the augmentation per image."""

    def __init__(self, owner: TrainBatches) -> None:
        self.owner = owner

    def __len__(self) -> int:
        return len(self.owner)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.owner.current_epoch
        seed = self.owner.epoch_seed(epoch)
        for batch in self.owner.order(epoch):
            yield [(int(i), seed) for i in batch]


class _AugmentedRows(torch.utils.data.Dataset[tuple[np.ndarray, int]]):
    """One augmented image per (index, epoch seed), read in a worker; the augmentation is seeded
    per image, so batches do not depend on how many workers there are or which one reads."""

    def __init__(self, data: SplitArrays, augment: list[dict[str, Any]], seed: int) -> None:
        self.pixels = data.pixels
        self.labels = data.labels
        self.augment = augment
        self.seed = seed
        self.augmenter: Augmenter | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: tuple[int, int]) -> tuple[np.ndarray, int]:
        index, epoch_seed = key
        pixels = self.pixels[np.asarray([index])]
        if self.augment:
            if self.augmenter is None:
                self.augmenter = Augmenter(self.augment, self.seed)
            self.augmenter.reseed((epoch_seed * 7_919 + index) % 2**31)
            pixels = self.augmenter(pixels)
        return pixels[0], int(self.labels[index])


def _stack(items: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
    return np.stack([p for p, _ in items]), np.asarray([y for _, y in items], dtype=np.int64)


def default_workers() -> int:
    """DataLoader workers for streamed data: the CPUs this process may use, at most 8."""
    return min(8, usable_cpus())


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
