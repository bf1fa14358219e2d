"""The exceptions autoclf raises on purpose, and the rule for which failures stop a search.

Every error a user can cause is an `AutoclfError`; the CLI maps them to exit codes and prints
their message, never a traceback. Messages say what was wrong, the value received, and how to fix
it or list the valid values.

A failed trial, or a fatal error
--------------------------------
A trial that raises ends FAIL, never PRUNED, with its reason (user attribute `fail_reason`; see
search/record.py). What happens next depends on whose fault it was, as keras-tuner tells a
`FailedTrialError` from a `FatalError`:

- **The configuration's: a failed trial, and the search goes on** (until
  `study.max_consecutive_failures` fail in a row, a sign of a broken spec). `TrialFailed` (a
  NaN loss, a backbone that cannot take the image size), out of memory (`is_out_of_memory`; also
  user attribute `infeasible`: a smaller configuration may fit), and any other exception from
  resolving, building or training the model (a shape mismatch, an impossible combination of
  values): another configuration may well train. The trial keeps its shortened traceback (user
  attribute `traceback`) for whoever debugs it.
- **The environment's: a fatal error, and the search stops at once** (exit 2), since the next
  trial would fail the same way whatever it samples, and running it would only burn time:
  `FatalError` and its kinds (`StorageError`: the study storage, or a disk that cannot take a
  checkpoint; `DataError`: the data set; `DeviceError`, `WeightsUnavailable`: a device or
  pretrained weights this machine lacks), and what `fatal_error` recognises in an exception
  from elsewhere: a missing or broken library (`ImportError`), the file system (any `OSError`
  that reaches the trial: a vanished data or cache folder, a full disk, a read-only folder; model
  files a configuration names are read by the model factory, which raises `TrialFailed`), and a
  failed CUDA driver or device (`CUDA error: …`, after which the process's CUDA context is
  unusable). The trial is FAIL with the reason, keeps its checkpoint, and the next run retries
  it first (user attribute `cut_short`).
- **Neither: the user or the clock.** Ctrl-C and SIGTERM (`KeyboardInterrupt`: FAIL
  `interrupted`, exit 130) and the time budget (`DeadlineReached`: FAIL `timeout`, the search
  ends); the next run retries both first.
"""

from __future__ import annotations


class AutoclfError(Exception):
    """Base of every error autoclf raises on purpose. `exit_code` is what the CLI exits with."""

    exit_code = 1


class FatalError(AutoclfError):
    """The environment, not a trial's configuration, is broken: a missing library, a failed
    file system, disk, CUDA driver or study storage. A search stops at once (see the module
    docstring); the user must fix it, then rerun to resume, so exit 2 like a bad spec."""

    exit_code = 2


class SpecError(AutoclfError, ValueError):
    """The spec is invalid: a bad value, an unknown key, an unknown backbone or transform."""

    exit_code = 2


class OutputError(SpecError):
    """An output path a command may not write: inside the export or data folder it reads
    (automl_clf/outputs.py). Found before any work, like a bad spec (exit 2)."""


class DataError(FatalError, ValueError):
    """The data set cannot be used: a missing folder, an empty class, fewer than two classes."""

    exit_code = 2


class StudyError(AutoclfError):
    """The study cannot be created, resumed or read (e.g. it has no finished trial yet)."""

    exit_code = 1


class StorageError(StudyError, FatalError):
    """The study's storage or its files cannot be used: a damaged database, a read-only folder,
    a full disk. The user must fix the storage (the message says which file and how), so exit 2
    like a bad spec; nothing is deleted or rewritten on their behalf."""

    exit_code = 2


class DeviceError(FatalError):
    """The device asked for (`train.device`, `--device`) is not on this machine: every trial
    would fail the same way, so it stops the command before the first (exit 2)."""


class WeightsUnavailable(FatalError):
    """Pretrained weights a spec asks for are not on this machine and cannot be fetched (no
    network, `HF_HUB_OFFLINE`, `model.pretrained: cache`, no such Hub repository). The
    environment's fault, not a configuration's: found before any trial (exit 2)."""


class TrialFailed(AutoclfError):
    """One trial cannot go on (NaN loss, an impossible configuration); the study carries on."""


class ExportError(AutoclfError):
    """An export directory is missing, incomplete or written by an incompatible version."""

    exit_code = 2


class ExplainUnavailable(AutoclfError):
    """No heatmap can be made for this model: none of its stages gives a 2-D map of at least
    2 × 2 (final/explain.py says which families work and why). The predictions stand; the
    heatmaps are left out with this message."""


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


RERUN = "then rerun to resume the study (this trial is retried first)"
_CUDA_FAILURES = (  # torch's messages, lower-cased (a "CUDA error: out of memory" is memory)
    "cuda error",
    "cuda driver",
    "nvidia driver",
    "no cuda gpus are available",
    "nccl error",
)


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA or host out-of-memory, as torch raises it (`torch.OutOfMemoryError`,
    `MemoryError`, or a RuntimeError from an allocator that cannot allocate)."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def fatal_error(exc: BaseException) -> FatalError | None:
    """`exc`, raised by a trial, as the fatal error it is (see the module docstring), or None
    when it fails only its trial.

    Our own errors say what they are (a `FatalError` is fatal, `TrialFailed` is not); out of
    memory is the configuration's size. Of the others, a missing library, the file system and
    the CUDA driver are the environment: the returned error's message keeps what was raised and
    says what to fix.
    """
    if isinstance(exc, FatalError):
        return exc
    if isinstance(exc, AutoclfError) or is_out_of_memory(exc):
        return None
    raised = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ImportError):
        return FatalError(
            f"{raised}: a library autoclf needs is missing or broken; install it into this "
            f"Python environment, {RERUN}"
        )
    if isinstance(exc, OSError):
        return FatalError(
            f"{raised}: the file system failed, not the trial's configuration (a vanished data "
            f"or cache folder, a full disk, a read-only folder); fix it, {RERUN}"
        )
    if _is_cuda_failure(exc):
        return FatalError(
            f"{raised}: the CUDA driver or device failed, and this process cannot use it any "
            f"more; check the device (nvidia-smi), {RERUN}"
        )
    return None


def _is_cuda_failure(exc: BaseException) -> bool:
    """A CUDA runtime or driver error (torch ≥ 2.8 raises them as `torch.AcceleratorError`, a
    RuntimeError; earlier ones as a RuntimeError saying `CUDA error: …`)."""
    if type(exc).__name__ == "AcceleratorError":
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(f in text for f in _CUDA_FAILURES)
