"""Train one `TrialConfig` on a data set: the shared path of search trials and the final retrain.

It fixes the order that makes a run reproducible and leak-free: seed, decode, build the model,
compute dataset statistics on the training pixels only, build the preprocessing (the mean and
std the model's pretrained config expects, or the dataset's), the transfer plan and the
training-split augmentation, then fit.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from automl_clf.data.augment import Augmenter, transform_list
from automl_clf.data.batches import OnStep, TrainBatches, default_workers
from automl_clf.data.dataset import Dataset, SplitArrays, pixels_for_stats
from automl_clf.data.preprocess import Decoding, Preprocessing, build_preprocessing, mean_std
from automl_clf.errors import DeadlineReached
from automl_clf.models.factory import (
    build_model,
    count_parameters,
    measure_latency_ms,
    model_mean_std,
)
from automl_clf.models.transfer import plan_transfer
from automl_clf.spec.config import TrainConfig, TrialConfig
from automl_clf.train.checkpoint import Checkpoints, checkpoint_identity
from automl_clf.train.device import resolve_device
from automl_clf.train.mix import BatchMixer
from automl_clf.train.threads import run_threads
from automl_clf.train.trainer import (
    Deadline,
    EpochResult,
    FitResult,
    class_weights,
    fit,
    seed_everything,
)

EVAL_STEP_SHARE = 1 / 3  # an evaluation batch (forward only) costs this share of a step


@dataclass
class TrainedModel:
    fit: FitResult
    preprocessing: Preprocessing
    # {"albumentations": its own to_dict() of the transforms, "executor": "batched" for the
    # named policies (data/batch_augment.py) or "albumentations"}; None without augmentation
    augmentation: dict[str, Any] | None
    n_params: int
    latency_ms: float  # median forward time of one image on the training device


def train_config(
    config: TrialConfig,
    dataset: Dataset,
    *,
    train_on: tuple[str, ...] | SplitArrays = ("train",),
    validate_on: str | None = "val",
    max_epochs: int | None = None,
    lr_replay: list[float] | None = None,
    seed: int | None = None,
    checkpoint_dir: Path | None = None,
    checkpoint_owner: str = "",
    on_epoch: Callable[[EpochResult], None] | None = None,
    on_step: OnStep | None = None,
    deadline: Deadline | None = None,
    adaptive_threads: bool | None = None,
) -> TrainedModel:
    """Train `config` on the named splits; see the module docstring.

    Args:
        train_on: splits to train on, e.g. ("train", "val") for the final retrain, or the
            images themselves (a cross-validation fold: final/audit.py), decoded as `config`
            decodes.
        validate_on: the split for early stopping and pruning, or None.
        max_epochs: stop after this many epochs (a retrain: the trial's best epoch).
        lr_replay: per-epoch learning rates to replay (a retrain of a plateau schedule).
        seed: overrides `config.train.seed` (final retrains over several seeds).
        checkpoint_dir: save every epoch here, and resume from the checkpoint found there if
            it was written by a run of this exact config and seed, and of `checkpoint_owner`.
        checkpoint_owner: whose run this is beyond its config (a search: the study instance's
            id), so that another owner's checkpoint in the same folder is never resumed.
        on_step: hears (batches done, batches per epoch) inside an epoch, at most every
            half second (data/batches.py): a progress display's batch bar.
        deadline: end early, keeping the best finished epoch, when time runs out (a budget).
        adaptive_threads: on the CPU, and unless `train.threads` is set, choose the thread
            count by measured step time (train/threads.py) rather than keep it fixed: faster
            on a busy machine, not reproducible bit for bit. Default: under a `deadline`.
    """
    train_cfg = config.train if seed is None else config.train.model_copy(update={"seed": seed})
    adaptive = deadline is not None if adaptive_threads is None else adaptive_threads
    governed = adaptive and resolve_device(train_cfg.device).type == "cpu"
    with run_threads(train_cfg.threads, governed=governed) as governor:
        seed_everything(train_cfg.seed)
        splits = dataset.arrays(Decoding.of(config.data))
        if isinstance(train_on, SplitArrays):
            train = train_on
        else:
            train = SplitArrays.concat(*(splits[name] for name in train_on))
        model = build_model(
            config.model,
            n_classes=dataset.n_classes,
            in_chans=config.data.channels,
            image_size=config.data.image_size,
        )
        stats = mean_std(pixels_for_stats(train.pixels))  # training pixels only: no leakage
        # what the weights expect, from the pretrained config that came with the model
        preprocessing = build_preprocessing(config.data, model_mean_std(model), stats)
        augment = transform_list(config.augment)
        batches = _train_batches(config, train_cfg, dataset, train, preprocessing, augment)
        batches.on_step = on_step
        try:
            result = fit(
                model,
                batches,
                splits[validate_on] if validate_on is not None else None,
                train_cfg,
                preprocessing,
                plan=plan_transfer(model, config.model),
                weights=class_weights(train.labels, dataset.n_classes, train_cfg.class_weighting),
                mixer=BatchMixer(config.augment),
                max_epochs=max_epochs,
                lr_replay=lr_replay,
                on_epoch=on_epoch,
                checkpoints=_checkpoints(config, train_cfg, checkpoint_dir, checkpoint_owner),
                deadline=deadline,
                governor=governor,
            )
        finally:
            batches.close()
        latency = measure_latency_ms(
            result.model,
            config.data.channels,
            config.data.image_size,
            resolve_device(train_cfg.device),
        )
        serialised = _serialised_augmentation(config, augment, train_cfg.seed)
        return TrainedModel(result, preprocessing, serialised, count_parameters(model), latency)


def _checkpoints(
    config: TrialConfig, train_cfg: TrainConfig, folder: Path | None, owner: str
) -> Checkpoints | None:
    """The run's checkpoints in `folder`, owned by `owner` and the config as it runs, wherever
    it runs: a retry on another device (`--device`, or another GPU's helper process) resumes
    the same weights, which load onto any device."""
    if folder is None:
        return None
    anywhere = train_cfg.model_copy(update={"device": "auto"})
    ran = config.model_copy(update={"train": anywhere}).model_dump_json()
    return Checkpoints(folder, checkpoint_identity(owner, ran))


def _train_batches(
    config: TrialConfig,
    train_cfg: TrainConfig,
    dataset: Dataset,
    train: SplitArrays,
    preprocessing: Preprocessing,
    augment: list[dict[str, Any]],
) -> TrainBatches:
    """The training split's batches on the training device; a streamed split is read by
    DataLoader workers, an in-memory one in this process."""
    workers = 0
    if train.streamed:
        workers = dataset.spec.workers if dataset.spec.workers is not None else default_workers()
    return training_batches(
        config,
        dataset,
        train,
        preprocessing,
        augment,
        seed=train_cfg.seed,
        device=resolve_device(train_cfg.device),
        workers=workers,
    )


def training_batches(
    config: TrialConfig,
    dataset: Dataset,
    train: SplitArrays,
    preprocessing: Preprocessing,
    augment: list[dict[str, Any]],
    *,
    seed: int,
    device: torch.device,
    workers: int = 0,
) -> TrainBatches:
    """The batches a run of `config` draws from `train`: its batch size, seed, class-balanced
    sampling and transforms (named policies batched on the device, a custom list through
    albumentations). Training and the report's augmented preview both build them here, so the
    preview shows what training saw."""
    return TrainBatches(
        train,
        config.train.batch_size,
        preprocessing,
        augment,
        seed,
        n_classes=dataset.n_classes,
        oversample=config.train.sampling == "oversample",
        workers=workers,
        batched=config.augment.transforms is None,  # named policies: batched, on the device
        device=device,
    )


def _serialised_augmentation(
    config: TrialConfig, augment: list[dict[str, Any]], seed: int
) -> dict[str, Any] | None:
    """The augmentation as `TrainedModel.augmentation` records it; None without any."""
    if not augment:
        return None
    return {
        "albumentations": Augmenter(augment, seed).to_dict(),
        "executor": "batched" if config.augment.transforms is None else "albumentations",
    }


class _StepTimer:
    """A `Deadline` that times training steps and passes after `steps` of them: the probe's
    way of running the real training path for a few steps only.

    A training step does not wait for a CUDA device to finish it, so the timer does, before
    each stamp: the gaps are then the steps' device time, not the time to queue them.
    """

    def __init__(self, steps: int, device: torch.device, max_seconds: float | None = None) -> None:
        self.steps = steps
        self.device = device
        self.max_seconds = max_seconds
        self.stamps: list[float] = []  # time.perf_counter() before each step

    def fits(self, seconds: float) -> bool:
        return True

    def passed(self) -> bool:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.stamps.append(time.perf_counter())
        timed = self.stamps[1:]  # after the first step, which is left out
        limit = self.max_seconds
        if limit is not None and len(timed) >= 2 and timed[-1] - timed[0] >= limit:
            return True
        return len(self.stamps) > self.steps


def probe_step_times(
    config: TrialConfig, dataset: Dataset, *, steps: int = 4, max_seconds: float | None = None
) -> list[float]:
    """Seconds each of `steps` real training steps (batches) of `config` on the training split
    takes here, the first left out (allocations, lazy initialisation); empty when the training
    ended before it was timed (fewer steps in all). `max_seconds`: fewer steps once the timed
    ones took this long (one at least): a short budget on a busy machine cannot spend a third
    of itself probing (128 px photos at 60 s beside 4 busy loops: 24 s for 3 backbones)."""
    timer = _StepTimer(steps, resolve_device(config.train.device), max_seconds)
    with contextlib.suppress(DeadlineReached):  # the timer ends the run before its first epoch
        train_config(config, dataset, deadline=timer)
    return [b - a for a, b in zip(timer.stamps[1:], timer.stamps[2:], strict=False)]


def probe_epoch_seconds(
    config: TrialConfig, dataset: Dataset, *, steps: int = 8, max_seconds: float | None = None
) -> float:
    """Seconds one epoch of `config` takes here: a step's time from `steps` real training
    steps (`probe_step_times`; 0 when none was timed) scaled to the training split's batches,
    plus a validation pass at `EVAL_STEP_SHARE` of a step's cost per batch. What a time budget
    checks before its first trial.

    The step's time is the median of the later half of the timed steps: the first few after
    the one left out are still warming up (the plain CNN at 64 px on 2 threads: 55-60 ms for
    four steps, then 31-36 ms), and an epoch planned from them was 1.7 times what it took.
    """
    times = probe_step_times(config, dataset, steps=steps, max_seconds=max_seconds)
    step_s = statistics.median(times[len(times) // 2 :]) if times else 0.0
    splits = dataset.arrays(Decoding.of(config.data))
    batch = config.train.batch_size
    n_train = math.ceil(len(splits["train"]) / batch)
    n_val = math.ceil(len(splits["val"]) / batch)
    return step_s * (n_train + n_val * EVAL_STEP_SHARE)
