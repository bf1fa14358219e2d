"""`model.json`: everything needed to rebuild an exported model and feed it correctly.

Loading an export reads this JSON and a safetensors file only: no pickle, so loading an export
never runs code from it.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from pydantic import BaseModel, ConfigDict

from automl_clf.data.preprocess import Preprocessing
from automl_clf.spec.config import TrialConfig

FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
MANIFEST_FILE = "model.json"
REPORT_DIR = "report"


class ExportManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int
    classes: list[str]  # index order: output i of the model is classes[i]
    architecture: str  # "cnn" or the timm model name
    n_params: int
    input_shape: tuple[int, int, int]  # (channels, height, width) of one preprocessed image
    preprocessing: Preprocessing
    config: TrialConfig  # the resolved trial configuration that was retrained
    study: str
    trial: int
    trained_epochs: int
    train_on: str
    versions: dict[str, str]


def library_versions() -> dict[str, str]:
    versions: dict[str, Any] = {"python": platform.python_version()}
    for package in ("autoclf", "torch", "timm", "optuna", "albumentations", "numpy", "pillow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions
