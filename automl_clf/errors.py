"""The exceptions autoclf raises on purpose.

Every error a user can cause is an `AutoclfError`; the CLI maps them to exit codes and prints
their message, never a traceback. Messages say what was wrong, the value received, and how to fix
it or list the valid values.
"""

from __future__ import annotations


class AutoclfError(Exception):
    """Base of every error autoclf raises on purpose. `exit_code` is what the CLI exits with."""

    exit_code = 1


class SpecError(AutoclfError, ValueError):
    """The spec is invalid: a bad value, an unknown key, an unknown backbone or transform."""

    exit_code = 2


class DataError(AutoclfError, ValueError):
    """The data set cannot be used: a missing folder, an empty class, fewer than two classes."""

    exit_code = 2


class StudyError(AutoclfError):
    """The study cannot be created, resumed or read (e.g. it has no finished trial yet)."""

    exit_code = 1


class StorageError(StudyError):
    """The study's storage or its files cannot be used: a damaged database, a read-only folder,
    a full disk. The user must fix the storage (the message says which file and how), so exit 2
    like a bad spec; nothing is deleted or rewritten on their behalf."""

    exit_code = 2


class TrialFailed(AutoclfError):
    """One trial cannot go on (NaN loss, an impossible configuration); the study carries on."""


class ExportError(AutoclfError):
    """An export directory is missing, incomplete or written by an incompatible version."""

    exit_code = 2


class DeadlineReached(BaseException):
    """The time budget ran out before a run finished its first epoch: there is nothing to keep.

    A BaseException, so no `except Exception` between the trainer and the search loop can
    swallow it. (A run that finished an epoch is not cut this way: it ends early, keeping its
    best epoch; see `train/trainer.py`.)
    """


class ImageError(DataError):
    """One image file cannot be decoded: missing, not a regular file, corrupt, or too large.

    Code that reads many files (the data set, `predict`) lists the file with `reason` and goes
    on; a single-image command (`visualize`) exits 2 with the whole message.
    """

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(path, reason)  # both in args, so the error pickles
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot read image {self.path}: {self.reason}"
