"""A trained model's weights as a file a later step can trust: written atomically, checked on
reading.

The search keeps each complete trial's best-epoch weights (`best.safetensors` in the trial's
artifacts folder) and records `{"file": <absolute path>, "sha256": <hex>}` as the trial's user
attribute `weights`. A study moved or copied with its artifacts folder finds them there
(`relocated`). The final step can then export a trial as it was searched
(`final.retrain: never`, or `auto` when there is no time to retrain) instead of retraining it.
Between the two, the file may be deleted, moved or overwritten (a cleaned-up artifacts folder, a
rerun of a study of the same name): `load_weights` checks the file is there and is the one
recorded before loading it, so a changed file is an error, never a silently different model.

The file holds tensors only (safetensors), so reading it never runs code.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from automl_clf.errors import StudyError

WEIGHTS_FILE = "best.safetensors"  # in the trial's artifacts folder
# the best epoch's softmax on the validation split, rows in the split's order: what the final
# step chooses an ensemble's members and weights on (final/selection.py) without loading models
PROBABILITIES_FILE = "val_probabilities.safetensors"
WEIGHTS_ATTR = "weights"  # the trial's user attribute holding the record
RETRAIN_INSTEAD = "set final.retrain: always to retrain the trial instead"


def save_weights(model: nn.Module, path: Path) -> dict[str, str]:
    """Write `model`'s state dict to `path` and return its record (`file`, `sha256`).

    Written to a temporary file beside `path`, then renamed over it, so a reader never sees half
    a file. Tensors are copied to contiguous CPU memory first (a CUDA or channels-last model
    saves the same file as its CPU twin).
    """
    state = {
        name: tensor.detach().to("cpu").clone(memory_format=torch.contiguous_format)
        for name, tensor in model.state_dict().items()
    }
    return _save_tensors(state, path)


def save_probabilities(probabilities: np.ndarray, path: Path) -> dict[str, str]:
    """Write a trial's best-epoch validation probabilities (float32) to `path`, as
    `save_weights` writes weights; returns the record (`file`, `sha256`)."""
    tensor = torch.from_numpy(np.ascontiguousarray(probabilities, dtype=np.float32))
    return _save_tensors({"probabilities": tensor}, path)


def load_probabilities(record: Any, shape: tuple[int, int]) -> np.ndarray | None:
    """The probabilities `record` names, when the file is there, unchanged and of `shape`
    (validation images, classes); None otherwise (a study from before they were kept, a
    cleaned artifacts folder): the caller then computes them from the weights."""
    if weights_problem(record) is not None:
        return None
    try:
        array = load_file(record["file"])["probabilities"].numpy().astype(np.float64)
    except (KeyError, SafetensorError, OSError):
        return None
    return array if array.shape == shape else None


def _save_tensors(state: dict[str, torch.Tensor], path: Path) -> dict[str, str]:
    """Write `state` to a temporary file beside `path`, then rename it over `path`."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        save_file(state, tmp)
        digest = file_sha256(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"file": str(path), "sha256": digest}


def relocated(record: Any, artifacts_root: Path) -> Any:
    """`record` (weights or probabilities) with its file under `artifacts_root` when the path it
    recorded is gone: the study was moved or copied with its artifacts folder. The path is
    absolute; its last two parts, the trial's folder and the file's name, are where the file
    sits under any artifacts folder. `weights_problem` still checks the file is the one recorded
    (its sha256). A record that is not one, or whose file is where it says, is returned as is."""
    if not isinstance(record, dict) or not isinstance(record.get("file"), str):
        return record
    path = Path(record["file"])
    moved = Path(artifacts_root) / path.parent.name / path.name
    if path.is_file() or not moved.is_file():
        return record
    return {**record, "file": str(moved)}


def weights_problem(record: Any) -> str | None:
    """Why the weights a record names cannot be used (missing record, file gone or changed), or
    None when they can. Cheap enough to ask before deciding not to retrain."""
    if not isinstance(record, dict) or not all(
        isinstance(record.get(key), str) for key in ("file", "sha256")
    ):
        return "no best-epoch weights were recorded for it"
    path = Path(record["file"])
    if not path.is_file():
        return f"its best-epoch weights are gone ({path} does not exist)"
    if file_sha256(path) != record["sha256"]:
        return f"its best-epoch weights changed since it finished ({path} has another sha256)"
    return None


def load_weights(model: nn.Module, record: Any, *, trial: int | None = None) -> None:
    """Load the weights `record` names into `model`, after checking the file is the one recorded.

    Raises:
        StudyError: the record is missing, the file is gone or changed, or its tensors do not
            fit `model`; the message says to retrain instead.
    """
    who = f"trial #{trial}" if trial is not None else "the trial"
    problem = weights_problem(record)
    if problem is not None:
        raise StudyError(f"cannot use {who} as searched: {problem}; {RETRAIN_INSTEAD}")
    path = Path(record["file"])
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except (RuntimeError, SafetensorError, OSError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise StudyError(
            f"cannot use {who} as searched: {path} does not fit its configuration ({reason}); "
            f"{RETRAIN_INSTEAD}"
        ) from None


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
