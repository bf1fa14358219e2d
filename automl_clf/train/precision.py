"""Where a run's tensors live and in which number format, for training and evaluation alike.

On CUDA with `train.mixed_precision` (the default), forward passes run under autocast in bfloat16
(float16 on GPUs without bfloat16, with loss scaling), and the model and its input images are laid
out channels_last; anywhere else everything is float32 in torch's default layout. A trial
evaluates under the `Precision` it trains with, so its validation loss measures the weights as
they were trained, at the same speed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from automl_clf.errors import TrialFailed


def resolve_device(name: str) -> torch.device:
    """`auto`: CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrialFailed("train.device is 'cuda' but no CUDA device is available; use 'auto'")
    return torch.device(name)


@dataclass(frozen=True)
class Precision:
    """The device, and the autocast dtype there (None: float32, the default layout)."""

    device: torch.device
    dtype: torch.dtype | None = None

    @classmethod
    def of(cls, device: torch.device | str, mixed_precision: bool) -> Precision:
        """Mixed precision where asked for and the device is CUDA; float32 otherwise."""
        device = torch.device(device)
        if not mixed_precision or device.type != "cuda":
            return cls(device)
        return cls(device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)

    def scaler(self) -> torch.amp.GradScaler:
        """A loss scaler, on for float16 only (bfloat16 has float32's range). When on, its
        `step` reads the device at every step (did the gradients overflow?)."""
        return torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)

    def autocast(self) -> Any:
        """The context forward passes run in."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def place(self, model: nn.Module) -> nn.Module:
        """`model` moved to the device (channels_last under mixed precision)."""
        model.to(self.device)
        if self.dtype is not None:
            model.to(memory_format=torch.channels_last)
        return model

    def inputs(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of images and labels on the device, the images in the model's layout.

        Copied without waiting for the device (`non_blocking`): nothing here reads a value.
        """
        x = x.to(self.device, non_blocking=True)
        if self.dtype is not None:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, non_blocking=True)
