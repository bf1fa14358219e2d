"""The trainer: one loop for trials, the final retrain and tests.

Per epoch: train on augmented batches, evaluate on the validation split (when there is one),
call `on_epoch` (the search reports to Optuna and may prune there), keep a copy of the weights
of the best epoch by validation loss, and stop after `early_stopping_patience` epochs without
improvement. The returned model holds the best epoch's weights. A non-finite loss ends training
with `TrialFailed` naming the epoch and step.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from automl_clf.data.augment import Augmenter
from automl_clf.data.batches import eval_batches, train_batches
from automl_clf.data.dataset import SplitArrays
from automl_clf.data.preprocess import Preprocessing
from automl_clf.errors import TrialFailed
from automl_clf.spec.config import TrainConfig
from automl_clf.train.metrics import EvalResult, summarise
from automl_clf.train.optim import build_optimizer, build_schedule

EVAL_BATCH_SIZE = 256


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based
    train_loss: float
    val: EvalResult | None
    lr: float  # at the end of the epoch
    seconds: float


@dataclass
class FitResult:
    model: nn.Module  # holds the best epoch's weights (the last epoch's without validation)
    history: list[EpochResult]
    best_epoch: int  # 1-based

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
    """`balanced`: inverse class frequency, n / (k * count_c), as scikit-learn defines it."""
    if mode == "none":
        return None
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = len(labels) / (n_classes * np.maximum(counts, 1.0))
    return torch.tensor(weights, dtype=torch.float32)


def fit(
    model: nn.Module,
    train: SplitArrays,
    val: SplitArrays | None,
    cfg: TrainConfig,
    preprocessing: Preprocessing,
    augmenter: Augmenter | None,
    *,
    weights: torch.Tensor | None = None,
    max_epochs: int | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> FitResult:
    """Train `model` for up to `max_epochs` (default `cfg.epochs`); see the module docstring.

    Args:
        weights: per-class loss weights (see `class_weights`), or None.
        max_epochs: stop here even if `cfg.epochs` is larger; the LR schedule still spans
            `cfg.epochs` (a retrain replays the trial's learning rates up to its best epoch).
    """
    device = resolve_device(cfg.device)
    model.to(device)
    loss_fn = nn.CrossEntropyLoss(
        weight=None if weights is None else weights.to(device),
        label_smoothing=cfg.label_smoothing,
    )
    steps_per_epoch = max(1, len(train) // cfg.batch_size + (len(train) % cfg.batch_size > 1))
    optimizer = build_optimizer(model, cfg)
    schedule = build_schedule(optimizer, cfg, steps_per_epoch)
    generator = torch.Generator().manual_seed(cfg.seed)

    history: list[EpochResult] = []
    best_epoch, best_loss, best_state = 0, math.inf, None
    n_epochs = min(cfg.epochs, max_epochs or cfg.epochs)
    for epoch in range(1, n_epochs + 1):
        started = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        for step, (x, y) in enumerate(
            train_batches(train, cfg.batch_size, preprocessing, augmenter, generator)
        ):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = loss_fn(model(x), y)
            if not torch.isfinite(loss):
                raise TrialFailed(
                    f"training loss became {loss.item()} at epoch {epoch}, step {step + 1} "
                    f"(lr {optimizer.param_groups[0]['lr']:.3g}); lower train.lr"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(y)
            count += len(y)
        val_result = evaluate(model, val, preprocessing, device) if val is not None else None
        if val_result is not None and not math.isfinite(val_result.loss):
            raise TrialFailed(f"validation loss became {val_result.loss} at epoch {epoch}")
        result = EpochResult(
            epoch=epoch,
            train_loss=total / max(count, 1),
            val=val_result,
            lr=optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - started,
        )
        history.append(result)
        monitored = val_result.loss if val_result is not None else -epoch  # no val: the last
        if monitored < best_loss:
            best_epoch, best_loss = epoch, monitored
            best_state = copy.deepcopy(model.state_dict())
        if on_epoch is not None:
            on_epoch(result)
        patience = cfg.early_stopping_patience
        if val is not None and patience is not None and epoch - best_epoch >= patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return FitResult(model=model, history=history, best_epoch=best_epoch)


@torch.no_grad()
def evaluate(
    model: nn.Module, data: SplitArrays, preprocessing: Preprocessing, device: torch.device
) -> EvalResult:
    """Loss (plain cross-entropy) and metrics of `model` on `data`, in eval mode."""
    model.eval()
    probabilities, total = [], 0.0
    for x, y in eval_batches(data, EVAL_BATCH_SIZE, preprocessing):
        logits = model(x.to(device)).float()
        total += nn.functional.cross_entropy(logits, y.to(device), reduction="sum").item()
        probabilities.append(torch.softmax(logits, dim=1).cpu().numpy())
    probs = np.concatenate(probabilities)
    return summarise(total / max(len(data), 1), probs, data.labels)
