"""What an export records to be reproducible: the data it saw and the configuration it ran.

data fingerprint   the data set's own fingerprint (data/dataset.py): a SHA-256 over every
                   file of every split (split, class, path relative to the data root, and the
                   file's content hash), so a renamed, moved, relabelled or edited image
                   changes it; the study refuses to resume on a different one
spec.yaml          the spec with every searched value fixed to the exported trial's, a valid
                   spec that `autoclf validate` accepts and whose search space has one point
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from automl_clf.data.dataset import Dataset
from automl_clf.spec.config import TrialConfig
from automl_clf.spec.load import parse_spec
from automl_clf.spec.models import Spec

SPEC_FILE = "spec.yaml"


class DataFingerprint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    root: str
    n_files: int
    sha256: str  # of the file list (split, class, relative path) and every file's contents


def data_fingerprint(dataset: Dataset) -> DataFingerprint:
    """The data set's fingerprint, with where it was and how many files it had."""
    n_files = sum(len(samples) for samples in dataset.splits.by_name().values())
    return DataFingerprint(root=str(dataset.root), n_files=n_files, sha256=dataset.fingerprint)


def resolved_spec(spec: Spec, config: TrialConfig, *, study: str, trial: int) -> dict[str, Any]:
    """The spec as a mapping, with the data, model, train and augment sections fixed to `config`.

    A value the trial did not use (`model.cnn` for a timm backbone, `train.momentum` without
    SGD) falls back to the spec's literal default, so no search space is left anywhere. The
    study gets a name of its own and default storage, so searching with this file can never add
    one-point trials to the original study.
    """
    raw: dict[str, Any] = spec.model_dump(mode="json")
    # The study section as the user wrote it (defaults stay implicit: e.g. the default pruner
    # must not appear in a multi-objective study), less where the original study lives and its
    # warm-start entries (they name searched params, and this spec searches none).
    written = spec.study.model_dump(mode="json", exclude_unset=True)
    dropped = ("name", "storage", "artifacts", "warm_start")
    kept = {key: value for key, value in written.items() if key not in dropped}
    raw["study"] = {"name": f"{study}-trial{trial}", **kept}
    for section, values in config.model_dump(mode="json").items():
        target = raw[section]
        for key, value in values.items():
            if key not in target:
                continue  # a config-only field (none today); the spec cannot say it
            if value is not None:
                target[key] = value
            elif target.get(key) is not None:
                target.pop(key)  # not used by this trial: the field's default stands
    return raw


def resolved_spec_yaml(
    spec: Spec, config: TrialConfig, *, study: str, trial: int, note: str | None = None
) -> str:
    """`spec.yaml` of an export: `resolved_spec`, checked to be a valid spec, with a header
    (and `note` as its last line, e.g. that the export is an ensemble)."""
    raw = resolved_spec(spec, config, study=study, trial=trial)
    base_dir = Path(spec.data.root or spec.data.manifest or ".")
    parse_spec(raw, base_dir=base_dir)  # fails loudly if the mapping drifted from the spec
    header = (
        f"# The configuration of trial #{trial} of study {study!r}, as autoclf exported it:\n"
        "# every searched value is fixed to the trial's. Paths are absolute; a search with it\n"
        "# makes a new one-point study beside it, never touching the original.\n"
    )
    if note is not None:
        header += f"# {note}\n"
    return header + yaml.safe_dump(raw, sort_keys=False)
