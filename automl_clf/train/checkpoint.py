"""Per-epoch training checkpoints, written atomically, so a killed trial resumes where it was.

A checkpoint holds the model, optimizer, schedule and loss-scaler state, the best epoch's weights
and the history so far. Every random stream of an epoch is seeded from (seed, epoch), so no RNG
state needs saving: a resumed run continues exactly as the uninterrupted one would have.

Checkpoints are our own files, still read with `weights_only=True`: loading one never runs code.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "last.pt"


class Checkpoints:
    """The latest epoch checkpoint of one trial, in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / CHECKPOINT_FILE

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none (or it is unreadable: start afresh)."""
        if not self.path.is_file():
            return None
        try:
            state: dict[str, Any] = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:  # a torn or foreign file must never stop a trial: train from scratch
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write to a temporary file beside the checkpoint, then rename over it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{CHECKPOINT_FILE}.")
        os.close(fd)
        try:
            torch.save(state, tmp)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def clear(self) -> None:
        """Remove the checkpoint once its trial is finished: it is only for resuming."""
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # other artifacts may live there: keep those
            self.folder.rmdir()
