"""Per-epoch training checkpoints, written atomically, so a killed trial resumes where it was.

A checkpoint holds the model, optimizer, schedule and loss-scaler state, the best epoch's weights
and the history so far. Every random stream of an epoch is seeded from (seed, epoch), so no RNG
state needs saving: a resumed run continues exactly as the uninterrupted one would have.

A checkpoint's folder (`trial_<n>/`) says nothing about whose it is: trial numbers restart at 0
in a study deleted and made again, and a retried trial may run with a changed spec. So every
checkpoint carries an `identity` (a hash of the study instance's id and the trial's resolved
config) and is resumed only by a run of the same identity; any other is discarded, never loaded.

Checkpoints are our own files, still read with `weights_only=True`: loading one never runs code.
A disk that cannot take a checkpoint (full, over quota, read-only) is a `StorageError` naming
the folder, not a torch error: the trial cannot go on, and neither can the next ones.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from automl_clf.errors import StorageError

CHECKPOINT_FILE = "last.pt"
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


def checkpoint_identity(*parts: str) -> str:
    """A short hash of what a checkpoint belongs to (e.g. a study's id and a config's JSON)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


class Checkpoints:
    """The latest epoch checkpoint of one run, in `folder`, that only a run of the same
    `identity` (see `checkpoint_identity`) may resume."""

    def __init__(self, folder: Path, identity: str = "") -> None:
        self.folder = folder
        self.path = folder / CHECKPOINT_FILE
        self.identity = identity

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none, it is unreadable, or it belongs to
        another run (another study, or another config): that one is removed, so the run
        trains from scratch and its own checkpoints replace it."""
        if not self.path.is_file():
            return None
        try:
            state: dict[str, Any] = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:  # a torn or foreign file must never stop a trial: train from scratch
            return None
        if state.get("identity") != self.identity:
            self.path.unlink(missing_ok=True)
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write to a temporary file beside the checkpoint, then rename over it.

        Raises:
            StorageError: the disk is full or the folder not writable.
        """
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{CHECKPOINT_FILE}.")
        except OSError as exc:
            raise self._disk_error(exc) from None
        try:
            # Through our own file object, so a failed write is an OSError with its errno (given
            # a path, torch writes in C++ and reports only "unexpected pos").
            with os.fdopen(fd, "wb") as handle:
                torch.save({**state, "identity": self.identity}, handle)
            os.replace(tmp, self.path)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            cause = _os_error(exc)
            if cause is not None and cause.errno in _DISK_FULL | _NOT_WRITABLE:
                raise self._disk_error(cause) from None
            raise

    def _disk_error(self, exc: OSError) -> StorageError:
        if exc.errno in _DISK_FULL:
            fix = (
                f"free space on the disk holding {self.folder} (or set study.artifacts to a "
                "folder on another disk)"
            )
        else:
            fix = f"make {self.folder} writable (or set study.artifacts to a writable folder)"
        return StorageError(
            f"cannot write the trial checkpoint in {self.folder}: {exc.strerror or exc}; {fix}, "
            "then rerun to resume the study"
        )

    def clear(self) -> None:
        """Remove the checkpoint once its trial is finished: it is only for resuming."""
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # other artifacts may live there: keep those
            self.folder.rmdir()


def _os_error(exc: BaseException | None) -> OSError | None:
    """The OSError behind `exc` (torch raises its own RuntimeError from a failed write)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
