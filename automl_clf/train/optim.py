"""Optimizers and learning-rate schedules named by a `TrainConfig`."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from automl_clf.spec.config import TrainConfig

ParamGroups = list[tuple[list[nn.Parameter], float]]  # (parameters, lr multiplier)


def build_optimizer(groups: ParamGroups, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD over the groups, each at `cfg.lr × its multiplier`."""
    param_groups = [
        {"params": [p for p in params if p.requires_grad], "lr": cfg.lr * scale}
        for params, scale in groups
    ]
    param_groups = [g for g in param_groups if g["params"]]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            param_groups,
            lr=cfg.lr,
            momentum=cfg.momentum or 0.0,
            nesterov=bool(cfg.nesterov) and bool(cfg.momentum),
            weight_decay=cfg.weight_decay,
        )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


class Schedule:
    """The learning rate over a run: stepped after every batch, and told each epoch's val loss.

    Every schedule spans `cfg.epochs`, whatever epoch training stops at, so a retrain that stops
    at the best trial's best epoch replays exactly the learning rates that trial saw. Plateau
    decays depend on validation losses a retrain on train+val does not have, so a retrain replays
    the trial's recorded per-epoch learning rates instead (`replay`).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        cfg: TrainConfig,
        steps_per_epoch: int,
        replay: list[float] | None = None,
    ) -> None:
        self.optimizer = optimizer
        self.cfg = cfg
        self.replay = replay
        self.base = [group["lr"] for group in optimizer.param_groups]
        total = max(1, cfg.epochs * steps_per_epoch)
        warmup = int((cfg.warmup_epochs or 0.0) * steps_per_epoch)
        self.per_step: torch.optim.lr_scheduler.LRScheduler | None = None
        self.plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
        self.plateau_warmup, self.steps = 0, 0
        if cfg.schedule == "onecycle":
            self.per_step = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=self.base, total_steps=total
            )
        elif cfg.schedule == "plateau":
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=cfg.gamma, patience=cfg.plateau_patience
            )
            # Warm-up by hand: a LambdaLR would overwrite the plateau's decays at every step.
            self.plateau_warmup = warmup
            self._set_scale(1.0 / warmup if warmup else 1.0)
        else:
            shape = _shape(cfg, steps_per_epoch, total)
            self.per_step = _lambda(
                optimizer, lambda s: shape(s) * (min(1.0, (s + 1) / warmup) if warmup else 1.0)
            )

    def _set_scale(self, scale: float) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base, strict=True):
            group["lr"] = base * scale

    def start_epoch(self, epoch: int) -> None:
        if self.replay is not None and epoch - 1 < len(self.replay):
            self._set_scale(self.replay[epoch - 1] / self.cfg.lr)

    def step_batch(self) -> None:
        self.steps += 1
        if self.replay is not None:
            return
        if self.per_step is not None:
            self.per_step.step()
        elif self.steps <= self.plateau_warmup:
            self._set_scale(min(1.0, (self.steps + 1) / self.plateau_warmup))

    def end_epoch(self, val_loss: float | None) -> None:
        if self.plateau is not None and val_loss is not None and self.replay is None:
            self.plateau.step(val_loss)

    @property
    def lr(self) -> float:
        """The head's (first group's) current learning rate."""
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {
            "per_step": self.per_step.state_dict() if self.per_step else None,
            "plateau": self.plateau.state_dict() if self.plateau else None,
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        if self.per_step is not None and state["per_step"] is not None:
            self.per_step.load_state_dict(state["per_step"])
        if self.plateau is not None and state["plateau"] is not None:
            self.plateau.load_state_dict(state["plateau"])


def _lambda(optimizer: torch.optim.Optimizer, fn: Any) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


def _shape(cfg: TrainConfig, steps_per_epoch: int, total: int) -> Any:
    """LR multiplier by step for cosine, step and constant (before warm-up)."""
    if cfg.schedule == "cosine":
        return lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total))
    if cfg.schedule == "step":
        return lambda s: cfg.gamma ** ((s // steps_per_epoch) // cfg.step_size)
    return lambda s: 1.0
