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
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
from automl_clf.train.metrics import EvalResult, summarise
from automl_clf.train.mix import BatchMixer
from automl_clf.train.optim import Schedule, build_optimizer

EVAL_BATCH_SIZE = 256
EFFECTIVE_NUMBER_BETA = 0.999  # Cui et al. 2019, "Class-Balanced Loss Based on Effective Number"


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

    @property
    def best(self) -> EpochResult:
        return self.history[self.best_epoch - 1]

    @property
    def epochs_run(self) -> int:
        return len(self.history)


def resolve_device(name: str) -> torch.device:
    """`auto`: CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrialFailed("train.device is 'cuda' but no CUDA device is available; use 'auto'")
    return torch.device(name)


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


class _Precision:
    """Mixed precision and channels_last on CUDA (bf16, else fp16 with loss scaling); plain
    float32 elsewhere."""

    def __init__(self, device: torch.device, enabled: bool) -> None:
        self.enabled = enabled and device.type == "cuda"
        self.dtype = torch.float32
        if self.enabled:
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        self.device = device

    def autocast(self) -> Any:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.dtype)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.enabled else x


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

    Raises:
        DeadlineReached: the deadline passed before the first epoch ended.
    """
    device = resolve_device(cfg.device)
    precision = _Precision(device, cfg.mixed_precision)
    model.to(device)
    if precision.enabled:
        model.to(memory_format=torch.channels_last)
    plan = plan or TransferPlan([(list(model.parameters()), 1.0)])
    loss_fn = nn.CrossEntropyLoss(
        weight=None if weights is None else weights.to(device),
        label_smoothing=cfg.label_smoothing,
    )
    optimizer = build_optimizer(plan.groups, cfg)
    schedule = Schedule(optimizer, cfg, len(batches), replay=lr_replay)

    history: list[EpochResult] = []
    best_epoch, best_loss, best_state = 0, math.inf, None
    start = 1
    saved = checkpoints.load() if checkpoints is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        precision.scaler.load_state_dict(saved["scaler"])
        history = [_epoch_from_dict(e) for e in saved["history"]]
        best_epoch, best_loss, best_state = saved["best_epoch"], saved["best_loss"], saved["best"]
        start = int(saved["epoch"]) + 1
        if on_epoch is not None:  # a resumed run reports its earlier epochs like a fresh one
            for restored in history:
                on_epoch(restored)
    resumed_from = start - 1

    n_epochs = min(cfg.epochs, max_epochs or cfg.epochs)
    patience = cfg.early_stopping_patience
    stopped_by: StoppedBy = "epochs"
    if val is not None and patience is not None and start - 1 - best_epoch >= patience:
        stopped_by = "early_stopping"
    for epoch in range(start, n_epochs + 1):
        if stopped_by != "epochs":
            break
        # the epochs so far (a resumed run's too) predict the next one's time
        if deadline is not None and history and not deadline.fits(_mean_seconds(history)):
            stopped_by = "deadline"
            break
        started = time.perf_counter()
        epoch_seed = batches.epoch_seed(epoch)
        torch.manual_seed(epoch_seed)  # dropout and anything else drawing from torch
        if mixer is not None:
            mixer.reseed(epoch_seed)
        schedule.start_epoch(epoch)
        lr = schedule.lr
        model.train()
        plan.keep_frozen_norms_in_eval()
        total, count = 0.0, 0
        correct = torch.zeros((), dtype=torch.long, device=device)  # read once, at the end
        for step, (x, y) in enumerate(batches.epoch(epoch)):
            if deadline is not None and deadline.passed():
                stopped_by = "deadline"  # abandon the unfinished epoch
                break
            x, y = precision.prepare(x), y.to(device, non_blocking=True)
            mixed = mixer(x, y) if mixer is not None and mixer.active else None
            with precision.autocast():
                if mixed is None:
                    logits = model(x)
                    loss = loss_fn(logits, y)
                else:
                    logits = model(mixed.images)
                    loss = mixed.weight * loss_fn(logits, mixed.labels) + (
                        1.0 - mixed.weight
                    ) * loss_fn(logits, mixed.partner_labels)
                    y = mixed.labels if mixed.weight >= 0.5 else mixed.partner_labels
            if not torch.isfinite(loss):
                raise TrialFailed(
                    f"training loss became {loss.item()} at epoch {epoch}, step {step + 1} "
                    f"(lr {schedule.lr:.3g}); lower train.lr"
                )
            optimizer.zero_grad(set_to_none=True)
            precision.scaler.scale(loss).backward()
            if cfg.grad_clip is not None:
                precision.scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            precision.scaler.step(optimizer)
            precision.scaler.update()
            schedule.step_batch()
            total += loss.item() * len(y)
            count += len(y)
            correct += (logits.detach().argmax(dim=1) == y).sum()
        if stopped_by == "deadline":
            break
        val_result = evaluate(model, val, preprocessing, device) if val is not None else None
        if val_result is not None and not math.isfinite(val_result.loss):
            raise TrialFailed(f"validation loss became {val_result.loss} at epoch {epoch}")
        schedule.end_epoch(val_result.loss if val_result is not None else None)
        result = EpochResult(
            epoch,
            total / max(count, 1),
            val_result,
            lr,
            time.perf_counter() - started,
            correct.item() / max(count, 1),
        )
        history.append(result)
        monitored = val_result.loss if val_result is not None else -epoch  # no val: the last
        if monitored < best_loss:
            best_epoch, best_loss = epoch, monitored
            best_state = _cpu_copy(model.state_dict())
        if checkpoints is not None:
            checkpoints.save(
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "scaler": precision.scaler.state_dict(),
                    "history": [_epoch_to_dict(e) for e in history],
                    "best_epoch": best_epoch,
                    "best_loss": best_loss,
                    "best": best_state,
                }
            )
        if on_epoch is not None:
            on_epoch(result)
        if val is not None and patience is not None and epoch - best_epoch >= patience:
            stopped_by = "early_stopping"
    if not history:
        raise DeadlineReached("the time budget ran out during the first epoch")
    if best_state is not None:
        model.load_state_dict(best_state)
    if val is not None and best_epoch:
        # The best epoch's full validation result (probabilities too), also after a resume.
        best_val = evaluate(model, val, preprocessing, device)
        history[best_epoch - 1] = _with_val(history[best_epoch - 1], best_val)
    return FitResult(model, history, best_epoch, resumed_from, stopped_by)


def _mean_seconds(epochs: list[EpochResult]) -> float:
    return sum(e.seconds for e in epochs) / len(epochs)


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _with_val(result: EpochResult, val: EvalResult) -> EpochResult:
    return EpochResult(
        result.epoch, result.train_loss, val, result.lr, result.seconds, result.train_accuracy
    )


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


@torch.no_grad()
def evaluate(
    model: nn.Module, data: SplitArrays, preprocessing: Preprocessing, device: torch.device
) -> EvalResult:
    """Loss (plain cross-entropy) and metrics of `model` on `data`, in eval mode."""
    model.eval()
    probabilities, total = [], 0.0
    for x, y in _to_device(eval_batches(data, EVAL_BATCH_SIZE, preprocessing), device):
        logits = model(x).float()
        total += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        probabilities.append(torch.softmax(logits, dim=1).cpu().numpy())
    probs = np.concatenate(probabilities)
    return summarise(total / max(len(data), 1), probs, data.labels)


def _to_device(
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]], device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for x, y in batches:
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
