"""`model.json`: everything needed to rebuild an exported model and feed it correctly.

Loading an export reads this JSON and a safetensors file only: no pickle, so loading an export
never runs code from it. `model.pt` (TorchScript) and `model.onnx` are extra formats for other
runtimes (see final/formats.py); their parity with this model is recorded under `formats`.

A damaged or hand-edited model.json is refused by `read_manifest` in one line naming the file
and the field, before anything is built from it: its parts must agree with each other (the
input shape, the preprocessing and the configuration), and sizes are bounded like the spec's.

`format_version` is model.json's schema version and `config_version` the trial config's of the
configurations it holds (automl_clf/versions.py): `read_manifest` reads every older export
through their migrations and refuses a newer one, saying to upgrade autoclf.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from automl_clf.data.preprocess import Preprocessing, PreprocessingSteps
from automl_clf.errors import ExportError
from automl_clf.final.calibration import CalibrationRecord, OutOfDistributionRecord
from automl_clf.final.formats import FormatCheck
from automl_clf.final.provenance import DataFingerprint
from automl_clf.final.selection import Selection
from automl_clf.spec.config import TrialConfig
from automl_clf.versions import __version__, upgrade_model_json

MODEL_FILE = "model.safetensors"
MANIFEST_FILE = "model.json"
REPORT_DIR = "report"
MEMBERS_DIR = "members"  # an ensemble's further members: members/<k>.safetensors, k >= 1
MAX_MEMBERS = 10  # final.ensemble's upper bound


def member_file(k: int) -> str:
    """Where member k's weights are, relative to the export: member 0's are the export's own."""
    return MODEL_FILE if k == 0 else f"{MEMBERS_DIR}/{k}.safetensors"


class MemberRecord(BaseModel):
    """One model of an ensemble export (`members` in model.json), enough to rebuild it alone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str  # its weights, relative to the export (`member_file`)
    trial: int
    architecture: str
    config: TrialConfig  # what trained these weights
    preprocessing: Preprocessing  # what it was trained with; the ensemble re-normalises to it
    trained_epochs: int
    train_on: str
    retrained: bool  # False: the trial's own best-epoch weights
    seed: int | None = None
    n_params: int
    objective_value: float | None = None  # the trial's objective during the search
    # its share of the averaged probability, chosen on validation (final/selection.py); None in
    # exports made before the selection, whose members count equally
    weight: Annotated[float, Field(gt=0, le=1)] | None = None


class SelectionRecord(BaseModel):
    """How an ensemble's members and weights were chosen on the validation split
    (final/selection.py): every candidate trial with its weight (0: left out), and the numbers
    the choice was made on. Kept also when the best trial alone won (no `members` then)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    objective: str
    trials: list[int]  # the candidates, best first
    weights: list[float]  # one per candidate, summing to 1
    val_single: dict[str, float]  # the best trial alone
    val_ensemble: dict[str, float]  # the chosen mix (== val_single when it is alone)

    @classmethod
    def of(cls, selection: Selection) -> SelectionRecord:
        return cls(
            objective=selection.objective,
            trials=list(selection.trials),
            weights=list(selection.weights),
            val_single=selection.val_single,
            val_ensemble=selection.val_ensemble,
        )


class LatencyRecord(BaseModel):
    """How `latency_ms` was measured: the same function and thread count as the trials'."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ms: float  # median of one forward pass of one image
    threads: int  # torch CPU threads while timing
    device: str
    method: str  # the measuring function, e.g. automl_clf.models.factory.measure_latency_ms


class ExportManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int  # MODEL_JSON's (automl_clf/versions.py; read: always the current one)
    config_version: int  # TRIAL_CONFIG's, of every config here (read: always the current one)
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
    retrained: bool = True  # False: the trial's own best-epoch weights (final.retrain: never)
    latency: LatencyRecord | None = None  # of the exported model (the whole ensemble), CPU
    # An ensemble (final.ensemble > 1): every member, member 0 first (the fields above are its);
    # the model is the mean of their probabilities (final/ensemble.py). Empty for one model.
    members: list[MemberRecord] = Field(default_factory=list, max_length=MAX_MEMBERS)
    selection: SelectionRecord | None = None  # how the members were chosen (final.ensemble > 1)
    # `preprocessing` spelled out for another runtime (data/preprocess.py PreprocessingSteps)
    preprocessing_steps: PreprocessingSteps | None = None
    # The temperature the exported graphs divide their logits by (final/calibration.py); None:
    # raw logits, as exports made before it (or with final.calibrate: none)
    calibration: CalibrationRecord | None = None
    # predict's default: `unsure` below this top probability (final.min_confidence)
    min_confidence: Annotated[float, Field(ge=0, le=1)] | None = None
    ood: OutOfDistributionRecord | None = None  # the out-of-distribution flag's threshold

    @model_validator(mode="after")
    def _parts_agree(self) -> ExportManifest:
        decoding, data = self.preprocessing.decoding, self.config.data
        expected = (decoding.channels, decoding.image_size, decoding.image_size)
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes: must be 2 or more distinct names, got {self.classes}")
        if self.input_shape != expected:
            raise ValueError(
                f"input_shape: must be {expected} (preprocessing.decoding's channels and "
                f"image_size), got {self.input_shape}"
            )
        if (data.channels, data.image_size) != (decoding.channels, decoding.image_size):
            raise ValueError(
                f"config.data: channels {data.channels} and image_size {data.image_size} must "
                f"match preprocessing.decoding's, {decoding.channels} and {decoding.image_size}"
            )
        if not len(self.preprocessing.mean) == len(self.preprocessing.std) == decoding.channels:
            raise ValueError(
                f"preprocessing: mean and std need one value per channel ({decoding.channels}), "
                f"got {len(self.preprocessing.mean)} and {len(self.preprocessing.std)}"
            )
        if self.architecture != self.config.model.backbone:
            raise ValueError(
                f"architecture: must be config.model.backbone {self.config.model.backbone!r}, "
                f"got {self.architecture!r}"
            )
        if self.members:
            self._members_agree()
        steps = self.preprocessing_steps
        if steps is not None and _essentials(steps) != _essentials(self.preprocessing.steps()):
            raise ValueError(
                "preprocessing_steps: must describe `preprocessing` (its mode, resize, size, "
                "mean and std)"
            )
        return self

    def _members_agree(self) -> None:
        """Member 0 is the export's own model; every member has its file, decodes as the export
        does and describes one consistent network."""
        first = self.members[0]
        if (first.trial, first.config, first.preprocessing) != (
            self.trial,
            self.config,
            self.preprocessing,
        ):
            raise ValueError(
                "members.0: must be the export's own model (its trial, config and preprocessing)"
            )
        for k, member in enumerate(self.members):
            where = f"members.{k}"
            if member.file != member_file(k):
                raise ValueError(f"{where}.file: must be {member_file(k)!r}, got {member.file!r}")
            if member.preprocessing.decoding != self.preprocessing.decoding:
                raise ValueError(
                    f"{where}.preprocessing.decoding: must be the export's "
                    f"{self.preprocessing.decoding.model_dump()} (one input feeds every member)"
                )
            data, channels = member.config.data, self.preprocessing.decoding.channels
            if (data.channels, data.image_size) != (channels, self.input_shape[1]):
                raise ValueError(
                    f"{where}.config.data: channels {data.channels} and image_size "
                    f"{data.image_size} must match the export's input_shape {self.input_shape}"
                )
            if not len(member.preprocessing.mean) == len(member.preprocessing.std) == channels:
                raise ValueError(f"{where}.preprocessing: mean and std need {channels} value(s)")
            if member.architecture != member.config.model.backbone:
                raise ValueError(
                    f"{where}.architecture: must be its config.model.backbone "
                    f"{member.config.model.backbone!r}, got {member.architecture!r}"
                )


def _essentials(steps: PreprocessingSteps) -> tuple[object, ...]:
    resize, tensor = steps.resize, steps.tensor
    return (steps.decode.mode, resize.method, resize.width, resize.filter, tensor.mean, tensor.std)


DAMAGED = (
    "the export is damaged or was edited: export it again with `autoclf best SPEC --export DIR`"
)


def read_manifest(path: Path) -> ExportManifest:
    """Read and check an export's model.json, of this format or an older one (migrated).

    Raises:
        ExportError: one line naming the file and what is wrong with it, or that it was
            written by a newer autoclf (a format or config version this one does not read).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExportError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExportError(
            f"{path}: not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x}); {DAMAGED}"
        ) from None
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise ExportError(
            f"{path}: not a valid autoclf manifest: Invalid JSON ({exc}); {DAMAGED}"
        ) from None
    if not isinstance(raw, dict):
        raise ExportError(f"{path}: not a valid autoclf manifest: not a JSON object; {DAMAGED}")
    try:
        return ExportManifest.model_validate(upgrade_model_json(raw, str(path)))
    except ValidationError as exc:
        raise ExportError(
            f"{path}: not a valid autoclf manifest: {validation_problems(exc)}; {DAMAGED}"
        ) from None


def validation_problems(exc: ValidationError, most: int = 3) -> str:
    """Pydantic's errors on one line: `field.path: what is wrong, got <value>`."""
    lines = []
    for error in exc.errors(include_url=False)[:most]:
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        value = error.get("input")
        got = f", got {value!r}"[:80] if isinstance(value, (str, int, float, bool)) else ""
        lines.append(f"{where}: {message}{got}" if where else f"{message}{got}")
    more = exc.error_count() - most
    return "; ".join(lines) + (f" (and {more} more)" if more > 0 else "")


def library_versions() -> dict[str, str]:
    versions: dict[str, Any] = {"python": platform.python_version()}
    versions["autoclf"] = __version__  # the code's own: an editable install's metadata lags
    packages = (
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
