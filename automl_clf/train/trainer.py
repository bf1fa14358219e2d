"""The trainer: one loop for trials, the final retrain and tests.

Per epoch: train on augmented (and optionally mixed) batches, evaluate on the validation split
(when there is one), save a checkpoint, call `on_epoch` (the search reports to Optuna and may
prune there), keep a copy of the weights of the best epoch by validation loss, and stop after
`early_stopping_patience` epochs without improvement. The returned model holds the best epoch's
weights. A non-finite loss ends training with `TrialFailed` naming the epoch and step.

With a `deadline` (a time budget), an epoch that would end past it is not started, and one still
running when it passes is abandoned: the run ends early with `stopped_by = "deadline"`, keeping
its best finished epoch ("anytime" results). A run cut before its first epoch ends raises
`DeadlineReached`, as there is nothing to keep.

Every random stream of epoch e (batch order, augmentation, mixing, dropout) is seeded from
(seed, e): a run is reproducible on the CPU, and one resumed from a checkpoint continues exactly
as it would have without the interruption.

Read top-down: `fit` restores a checkpoint, then per epoch calls `_Loop.run_epoch` (seed, train,
evaluate), records it in `_Progress` (history, best epoch) and saves a checkpoint of both. The
step core is `_Loop.step`. A step never waits for the device: its loss stays there, and the
epoch's losses are read once, at the epoch's end (`_EpochLosses`), which is also where a NaN or
infinite loss is found, with its step. Evaluation runs under the training `Precision` (dtype and
memory layout) and reads the device once per pass.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import nn

from automl_clf.data.batches import TrainBatches, eval_batches
from automl_clf.data.dataset import SplitArrays
from automl_clf.data.preprocess import Preprocessing
from automl_clf.errors import DeadlineReached, TrialFailed
from automl_clf.models.transfer import TransferPlan
from automl_clf.spec.config import TrainConfig
from automl_clf.train.checkpoint import Checkpoints
from automl_clf.train.device import resolve_device
from automl_clf.train.metrics import EvalResult, summarise
from automl_clf.train.mix import BatchMixer, MixedBatch
from automl_clf.train.optim import Schedule, build_optimizer
from automl_clf.train.precision import Precision
from automl_clf.train.threads import ThreadGovernor

EVAL_BATCH_SIZE = 256
EFFECTIVE_NUMBER_BETA = 0.999  # Cui et al. 2019, "Class-Balanced Loss Based on Effective Number"

__all__ = [
    "EVAL_BATCH_SIZE",
    "Deadline",
    "EpochResult",
    "FitResult",
    "class_weights",
    "evaluate",
    "fit",
    "resolve_device",
    "seed_everything",
]


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based
    train_loss: float
    val: EvalResult | None
    lr: float  # the head's learning rate at the start of the epoch
    seconds: float
    # share of training images whose top class was their label, over the epoch's augmented
    # batches as the weights changed (a mixed batch: the label with the larger share); None in
    # an epoch restored from a checkpoint written before it was recorded
    train_accuracy: float | None = None


class Deadline(Protocol):
    """When a run must stop (search/budget.py's `Budget` is one)."""

    def fits(self, seconds: float) -> bool:
        """Whether `seconds` of work started now ends in time."""
        ...

    def passed(self) -> bool: ...


StoppedBy = Literal["epochs", "early_stopping", "deadline"]


@dataclass
class FitResult:
    model: nn.Module  # holds the best epoch's weights (the last epoch's without validation)
    history: list[EpochResult]
    best_epoch: int  # 1-based
    resumed_from_epoch: int = 0  # the checkpoint's epoch this run continued from, 0 if none
    stopped_by: StoppedBy = "epochs"  # why training ended
    # the CPU thread counts it trained on, in order: one when fixed, those a governor set
    threads: tuple[int, ...] = ()

    @property
    def best(self) -> EpochResult:
        return self.history[self.best_epoch - 1]

    @property
    def epochs_run(self) -> int:
        return len(self.history)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a config and seed give the same run on the CPU."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def class_weights(labels: np.ndarray, n_classes: int, mode: str) -> torch.Tensor | None:
    """Per-class loss weights.

    balanced: n / (k × count_c), as scikit-learn defines it (the mean weight per image is 1).
    effective_number: (1 − β) / (1 − β^count_c) with β = 0.999, scaled to sum to k.
    """
    if mode == "none":
        return None
    counts = np.maximum(np.bincount(labels, minlength=n_classes).astype(np.float64), 1.0)
    if mode == "effective_number":
        raw = (1.0 - EFFECTIVE_NUMBER_BETA) / (1.0 - EFFECTIVE_NUMBER_BETA**counts)
        weights = raw * n_classes / raw.sum()
    else:
        weights = len(labels) / (n_classes * counts)
    return torch.tensor(weights, dtype=torch.float32)


def fit(
    model: nn.Module,
    batches: TrainBatches,
    val: SplitArrays | None,
    cfg: TrainConfig,
    preprocessing: Preprocessing,
    *,
    plan: TransferPlan | None = None,
    weights: torch.Tensor | None = None,
    mixer: BatchMixer | None = None,
    max_epochs: int | None = None,
    lr_replay: list[float] | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
    checkpoints: Checkpoints | None = None,
    deadline: Deadline | None = None,
    governor: ThreadGovernor | None = None,
) -> FitResult:
    """Train `model` for up to `max_epochs` (default `cfg.epochs`); see the module docstring.

    Args:
        plan: which parameters train and at which LR multiplier (models/transfer.py).
        weights: per-class loss weights (see `class_weights`), or None.
        mixer: batch-level MixUp/CutMix, or None.
        max_epochs: stop here even if `cfg.epochs` is larger; the LR schedule still spans
            `cfg.epochs` (a retrain replays the trial's learning rates up to its best epoch).
        lr_replay: per-epoch learning rates to replay instead of the schedule's (a plateau
            schedule's retrain).
        checkpoints: where to save each epoch and resume from, or None.
        deadline: stop early, keeping the best finished epoch, when time runs out.
        governor: sets the CPU threads by measured step time (train/threads.py), or None.

    Raises:
        TrialFailed: a training or validation loss became NaN or infinite.
        DeadlineReached: the deadline passed before the first epoch ended.
    """
    loop = _Loop.build(model, batches, val, cfg, preprocessing, plan, weights, mixer, lr_replay)
    loop.governor = governor
    progress = _restore(loop, checkpoints, on_epoch)
    resumed_from = progress.epochs_run
    patience = cfg.early_stopping_patience if val is not None else None
    stopped_by: StoppedBy = "early_stopping" if progress.waited(patience) else "epochs"
    for epoch in range(resumed_from + 1, min(cfg.epochs, max_epochs or cfg.epochs) + 1):
        if stopped_by != "epochs":
            break
        # the epochs so far (a resumed run's too) predict the next one's time
        if deadline is not None and progress.history and not deadline.fits(progress.seconds()):
            stopped_by = "deadline"
            break
        result = loop.run_epoch(epoch, deadline)
        if result is None:
            stopped_by = "deadline"  # the unfinished epoch is abandoned
            break
        progress.record(result, loop.model)
        if checkpoints is not None:
            checkpoints.save({"epoch": epoch, **loop.state_dict(), **progress.state_dict()})
        if on_epoch is not None:
            on_epoch(result)
        if progress.waited(patience):
            stopped_by = "early_stopping"
    return _result(loop, progress, resumed_from, stopped_by)


@dataclass
class _Loop:
    """What an epoch needs, built once per `fit`: the model on its device, the loss, the
    optimizer, its schedule and loss scaler, the batches and the validation split."""

    model: nn.Module
    batches: TrainBatches
    val: SplitArrays | None
    cfg: TrainConfig
    preprocessing: Preprocessing
    plan: TransferPlan
    mixer: BatchMixer | None  # None also when it mixes nothing
    precision: Precision
    loss_fn: nn.CrossEntropyLoss
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    scaler: torch.amp.GradScaler
    governor: ThreadGovernor | None = None  # times the steps and sets the CPU threads

    @classmethod
    def build(
        cls,
        model: nn.Module,
        batches: TrainBatches,
        val: SplitArrays | None,
        cfg: TrainConfig,
        preprocessing: Preprocessing,
        plan: TransferPlan | None,
        weights: torch.Tensor | None,
        mixer: BatchMixer | None,
        lr_replay: list[float] | None,
    ) -> _Loop:
        precision = Precision.of(resolve_device(cfg.device), cfg.mixed_precision)
        precision.place(model)
        plan = plan or TransferPlan([(list(model.parameters()), 1.0)])
        loss_fn = nn.CrossEntropyLoss(
            weight=None if weights is None else weights.to(precision.device),
            label_smoothing=cfg.label_smoothing,
        )
        optimizer = build_optimizer(plan.groups, cfg)
        schedule = Schedule(optimizer, cfg, len(batches), replay=lr_replay)
        return cls(
            model=model,
            batches=batches,
            val=val,
            cfg=cfg,
            preprocessing=preprocessing,
            plan=plan,
            mixer=mixer if mixer is not None and mixer.active else None,
            precision=precision,
            loss_fn=loss_fn,
            optimizer=optimizer,
            schedule=schedule,
            scaler=precision.scaler(),
        )

    def run_epoch(self, epoch: int, deadline: Deadline | None) -> EpochResult | None:
        """Train and evaluate `epoch`; None when `deadline` passed before its training ended.

        Raises:
            TrialFailed: the training or validation loss became NaN or infinite.
        """
        started = time.perf_counter()
        lr = self._start(epoch)
        trained = self._train(epoch, deadline)
        if trained is None:
            return None
        train_loss, train_accuracy = trained
        val = self.evaluate(self.val) if self.val is not None else None
        if val is not None and not math.isfinite(val.loss):
            raise TrialFailed(f"validation loss became {val.loss} at epoch {epoch}")
        self.schedule.end_epoch(val.loss if val is not None else None)
        seconds = time.perf_counter() - started
        return EpochResult(epoch, train_loss, val, lr, seconds, train_accuracy)

    def _start(self, epoch: int) -> float:
        """Seed `epoch`'s random streams from (seed, epoch), set its learning rate and the
        training mode; returns the head's learning rate."""
        epoch_seed = self.batches.epoch_seed(epoch)
        torch.manual_seed(epoch_seed)  # dropout and anything else drawing from torch
        if self.mixer is not None:
            self.mixer.reseed(epoch_seed)
        self.schedule.start_epoch(epoch)
        self.model.train()
        self.plan.keep_frozen_norms_in_eval()
        return self.schedule.lr

    def _train(self, epoch: int, deadline: Deadline | None) -> tuple[float, float] | None:
        """One epoch's steps; the mean training loss per image and the training accuracy, or
        None when `deadline` passed before the last step (checked before each step, without
        waiting for the device)."""
        losses = _EpochLosses()
        batches = self.batches.epoch(epoch)
        for x, y in self.governor.paced(batches) if self.governor is not None else batches:
            if deadline is not None and deadline.passed():
                losses.mean(epoch)  # a loss that went non-finite before still fails the trial
                return None
            lr = self.schedule.lr
            loss, correct = self.step(x, y)
            losses.add(loss, correct, len(y), lr)
        return losses.mean(epoch), losses.accuracy()

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward-backward-update on a batch; returns its loss and how many of its images
        the model got right (of a mixed batch: the label with the larger share), both left on
        the device."""
        x, y = self.precision.inputs(x, y)
        mixed = self.mixer(x, y) if self.mixer is not None else None
        with self.precision.autocast():
            loss, logits = self._loss(x, y, mixed)
        if mixed is not None:
            y = mixed.labels if mixed.weight >= 0.5 else mixed.partner_labels
        correct = (logits.detach().argmax(dim=1) == y).sum()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step_batch()
        return loss.detach(), correct

    def _loss(
        self, x: torch.Tensor, y: torch.Tensor, mixed: MixedBatch | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of the batch, and the logits; of a mixed batch, both labels' losses
        mixed as the images were (so class weights and label smoothing apply unchanged)."""
        if mixed is None:
            logits = self.model(x)
            return self.loss_fn(logits, y), logits
        logits = self.model(mixed.images)
        loss = mixed.weight * self.loss_fn(logits, mixed.labels) + (
            1.0 - mixed.weight
        ) * self.loss_fn(logits, mixed.partner_labels)
        return loss, logits

    def evaluate(self, data: SplitArrays) -> EvalResult:
        """`data` evaluated as the model trains (the same precision and memory layout)."""
        return _evaluate(self.model, data, self.preprocessing, self.precision)

    def state_dict(self) -> dict[str, Any]:
        """The model's and the optimizer's state, for a checkpoint."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.schedule.load_state_dict(saved["schedule"])
        self.scaler.load_state_dict(saved["scaler"])


class _EpochLosses:
    """An epoch's training losses and right answers, left on the device by each step and read
    once, at the epoch's end: reading one per step would make the host wait for the device at
    every step."""

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []  # per step, 0-d, on the device
        self.correct: list[torch.Tensor] = []  # per step, 0-d, on the device
        self.sizes: list[int] = []  # images per step
        self.lrs: list[float] = []  # the head's learning rate at each step

    def add(self, loss: torch.Tensor, correct: torch.Tensor, size: int, lr: float) -> None:
        self.losses.append(loss)
        self.correct.append(correct)
        self.sizes.append(size)
        self.lrs.append(lr)

    def accuracy(self) -> float:
        """The share of the epoch's training images the model got right as it trained."""
        right = int(torch.stack(self.correct).sum().item()) if self.correct else 0
        return right / max(sum(self.sizes), 1)

    def mean(self, epoch: int) -> float:
        """The mean loss per image, summed in step order.

        Raises:
            TrialFailed: a step's loss was NaN or infinite; names the first such step.
        """
        values = torch.stack(self.losses).tolist() if self.losses else []
        total = 0.0
        for step, (value, size) in enumerate(zip(values, self.sizes, strict=True), start=1):
            if not math.isfinite(value):
                raise TrialFailed(
                    f"training loss became {value} at epoch {epoch}, step {step} "
                    f"(lr {self.lrs[step - 1]:.3g}); lower train.lr"
                )
            total += value * size
        return total / max(sum(self.sizes), 1)


@dataclass
class _Progress:
    """The epochs run so far and the best of them: what a checkpoint keeps besides the
    model and optimizer, and what `fit` returns."""

    history: list[EpochResult] = field(default_factory=list)
    best_epoch: int = 0  # 1-based; 0 before the first epoch
    best_loss: float = math.inf  # the monitored value: val loss, else -epoch (the last wins)
    best_state: dict[str, torch.Tensor] | None = None  # the best epoch's weights, on the CPU

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    def seconds(self) -> float:
        """The mean epoch's seconds: what the next epoch is expected to take."""
        return sum(e.seconds for e in self.history) / len(self.history)

    def waited(self, patience: int | None) -> bool:
        """Whether `patience` epochs ran since the best one (never when None)."""
        return patience is not None and self.epochs_run - self.best_epoch >= patience

    def record(self, result: EpochResult, model: nn.Module) -> None:
        self.history.append(result)
        monitored = result.val.loss if result.val is not None else -result.epoch
        if monitored < self.best_loss:
            self.best_epoch, self.best_loss = result.epoch, monitored
            self.best_state = {
                k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
            }

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": [_epoch_to_dict(e) for e in self.history],
            "best_epoch": self.best_epoch,
            "best_loss": self.best_loss,
            "best": self.best_state,
        }

    @classmethod
    def from_state_dict(cls, saved: dict[str, Any]) -> _Progress:
        history = [_epoch_from_dict(e) for e in saved["history"]]
        return cls(history, saved["best_epoch"], saved["best_loss"], saved["best"])


def _restore(
    loop: _Loop, checkpoints: Checkpoints | None, on_epoch: Callable[[EpochResult], None] | None
) -> _Progress:
    """The progress of the run `checkpoints` holds, its state loaded into `loop`; a fresh
    start when there is none (or it belongs to another run: see train/checkpoint.py)."""
    saved = checkpoints.load() if checkpoints is not None else None
    if saved is None:
        return _Progress()
    loop.load_state_dict(saved)
    progress = _Progress.from_state_dict(saved)
    if on_epoch is not None:  # a resumed run reports its earlier epochs like a fresh one
        for restored in progress.history:
            on_epoch(restored)
    return progress


def _result(
    loop: _Loop, progress: _Progress, resumed_from: int, stopped_by: StoppedBy
) -> FitResult:
    """The model with the best epoch's weights, and the best epoch's full validation result
    (probabilities too, which a checkpoint does not keep)."""
    if not progress.history:
        raise DeadlineReached("the time budget ran out during the first epoch")
    model, history, best_epoch = loop.model, list(progress.history), progress.best_epoch
    if progress.best_state is not None:
        model.load_state_dict(progress.best_state)
    if loop.val is not None and best_epoch:
        best = history[best_epoch - 1]
        history[best_epoch - 1] = replace(best, val=loop.evaluate(loop.val))
    threads = loop.governor.used if loop.governor is not None else [torch.get_num_threads()]
    return FitResult(model, history, best_epoch, resumed_from, stopped_by, tuple(threads))


def _epoch_to_dict(result: EpochResult) -> dict[str, Any]:
    val = result.val
    return {
        "epoch": result.epoch,
        "train_loss": result.train_loss,
        "train_accuracy": result.train_accuracy,
        "lr": result.lr,
        "seconds": result.seconds,
        "val": None
        if val is None
        else {k: getattr(val, k) for k in ("loss", "accuracy", "balanced_accuracy", "macro_f1")},
    }


def _epoch_from_dict(data: dict[str, Any]) -> EpochResult:
    """An epoch restored from a checkpoint: its val metrics without per-image outputs."""
    val = None
    if data["val"] is not None:
        empty = np.zeros((0, 0), dtype=np.float32)
        val = EvalResult(probabilities=empty, labels=np.zeros(0, dtype=np.int64), **data["val"])
    return EpochResult(
        data["epoch"],
        data["train_loss"],
        val,
        data["lr"],
        data["seconds"],
        data.get("train_accuracy"),  # absent from checkpoints of earlier versions
    )


def evaluate(
    model: nn.Module,
    data: SplitArrays,
    preprocessing: Preprocessing,
    device: torch.device | str,
    *,
    mixed_precision: bool = False,
) -> EvalResult:
    """Loss (plain cross-entropy) and metrics of `model` on `data`, in eval mode.

    Args:
        device: where `model` is.
        mixed_precision: on CUDA, run as `train.mixed_precision` trains (autocast,
            channels_last; see train/precision.py); off: float32, as `predict` runs.
    """
    return _evaluate(model, data, preprocessing, Precision.of(device, mixed_precision))


@torch.no_grad()
def _evaluate(
    model: nn.Module, data: SplitArrays, preprocessing: Preprocessing, precision: Precision
) -> EvalResult:
    """`evaluate` under `precision`; the device is read once, after the last batch."""
    model.eval()
    sums, probabilities = [], []
    for x, y in eval_batches(data, EVAL_BATCH_SIZE, preprocessing):
        x, y = precision.inputs(x, y)
        with precision.autocast():
            logits = model(x).float()
        sums.append(nn.functional.cross_entropy(logits, y, reduction="sum"))
        probabilities.append(torch.softmax(logits, dim=1))
    total = 0.0
    for batch_sum in torch.stack(sums).tolist():  # summed in batch order, in float64
        total += batch_sum
    probs = torch.cat(probabilities).cpu().numpy()
    return summarise(total / max(len(data), 1), probs, data.labels)
