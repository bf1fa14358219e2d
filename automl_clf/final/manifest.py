"""`model.json`: everything needed to rebuild an exported model and feed it correctly.

Loading an export reads this JSON and a safetensors file only: no pickle, so loading an export
never runs code from it. `model.pt` (TorchScript) and `model.onnx` are extra formats for other
runtimes (see final/formats.py); their parity with this model is recorded under `formats`.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from automl_clf.data.preprocess import Preprocessing
from automl_clf.final.formats import FormatCheck
from automl_clf.final.provenance import DataFingerprint
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
    # Added after format 1 was first written; defaults keep earlier exports loadable.
    seed: int | None = None  # the retrain seed that was exported
    data_fingerprint: DataFingerprint | None = None
    formats: dict[str, FormatCheck] = Field(default_factory=dict)  # torchscript, onnx
    # the training augmentation as albumentations serialises it, and how it was applied
    # (train/session.py); for the record only: predict never augments
    augmentation: dict[str, Any] | None = None


def library_versions() -> dict[str, str]:
    versions: dict[str, Any] = {"python": platform.python_version()}
    packages = (
        "autoclf",
        "torch",
        "timm",
        "optuna",
        "albumentations",
        "numpy",
        "pillow",
        "onnx",
        "onnxruntime",
    )
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions
