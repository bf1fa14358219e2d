"""The exported model as a scikit-learn-style classifier: `load(DIR).predict(images)`.

It applies the export's stored `Preprocessing` (the training-time one) and nothing else, and
predicts by argmax of the softmax. The probabilities are calibrated as the export's graphs are:
the network is wrapped in `Calibrated` with model.json's temperature (final/calibration.py); an
export without one predicts from the raw logits, as before. Below a minimum confidence
(`min_confidence=`, else model.json's `min_confidence`) the answer is `unsure`, and an image
whose top probability is below the validation images' `ood.threshold` is flagged `ood`.
`images` may be file paths, PIL images or uint8 arrays; `predict_paths` also takes folders and
reports unreadable files instead of raising; `explain` says where the model looked (Grad-CAM
heatmaps, final/explain.py).

Loading reads `model.json` and `model.safetensors` (tensors only; an ensemble also its members'
`members/<k>.safetensors`) and rebuilds the network from the recorded configuration: no pickle,
so an export cannot run code. An export made by an older autoclf loads through the migrations of
its formats (automl_clf/versions.py); one made by a newer autoclf is refused, naming the version.
The extra formats (`model.pt`, `model.onnx`) are for other runtimes and are not read here. A
damaged export (an unreadable or inconsistent model.json, a truncated or foreign weights file,
tensors of other shapes than model.json's network has) is an `ExportError` naming the file and
the problem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model
from torch import nn

from automl_clf.errors import AutoclfError, ExportError, ImageError
from automl_clf.final.calibration import UNSURE, calibrated, max_softmax
from automl_clf.final.ensemble import Ensemble
from automl_clf.final.explain import Explanation, explain
from automl_clf.final.manifest import (
    DAMAGED,
    MANIFEST_FILE,
    MODEL_FILE,
    ExportManifest,
    read_manifest,
)
from automl_clf.models.factory import build_model
from automl_clf.spec.config import TrialConfig
from automl_clf.train.device import resolve_device

ImageInput = str | Path | Image.Image | np.ndarray
BATCH_SIZE = 256


@dataclass
class Predictor:
    """An exported classifier. Fitted attributes end in `_`, as in scikit-learn."""

    model_: nn.Module
    manifest_: ExportManifest

    @property
    def classes_(self) -> list[str]:
        return list(self.manifest_.classes)

    def predict_proba(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Class probabilities (N, n_classes), columns in `classes_` order."""
        pixels = [self.load(image) for image in images]
        return self.predict_proba_pixels(np.stack(pixels)) if pixels else np.zeros((0, 0))

    @property
    def served_(self) -> nn.Module:
        """The network as the export serves it (and model.pt and model.onnx compute it): `model_`
        (the raw network, or Ensemble) with its logits divided by the temperature."""
        return calibrated(self.model_, self.manifest_.calibration)

    @property
    def temperature_(self) -> float:
        """What the logits are divided by: model.json's `calibration`, 1 without one."""
        calibration = self.manifest_.calibration
        return 1.0 if calibration is None else calibration.temperature

    @property
    def min_confidence_(self) -> float | None:
        """The export's default minimum confidence (final.min_confidence), or None."""
        return self.manifest_.min_confidence

    def predict(
        self, images: Sequence[ImageInput], min_confidence: float | None = None
    ) -> list[str]:
        """The most probable class name of each image; `unsure` where its probability is below
        `min_confidence` (None: the export's `min_confidence_`; 0: always a class)."""
        return answers(self.predict_proba(images), self.classes_, self._threshold(min_confidence))

    def predict_paths(
        self,
        paths: Iterable[str | Path],
        top_k: int = 1,
        min_confidence: float | None = None,
    ) -> list[FilePrediction]:
        """What `autoclf predict` does: files, and image files under folders (recursively); an
        unreadable file gets an `error` instead of stopping the others."""
        files = iter_image_files(paths)
        return predict_files(self, files, top_k=top_k, min_confidence=min_confidence)

    def ood_flags(self, probabilities: np.ndarray) -> np.ndarray | None:
        """Whether each row's top probability is below the export's out-of-distribution
        threshold; None for an export without one (made before it was recorded)."""
        ood = self.manifest_.ood
        return None if ood is None else ood.flags(max_softmax(probabilities))

    def _threshold(self, min_confidence: float | None) -> float | None:
        return self.min_confidence_ if min_confidence is None else min_confidence

    def load(self, image: ImageInput) -> np.ndarray:
        """One input as uint8 pixels (H, W, C), through the export's decoding."""
        decoding = self.manifest_.preprocessing.decoding
        if isinstance(image, (str, Path)):
            return decoding.load_file(image)
        if isinstance(image, np.ndarray):
            if image.ndim == 3 and image.shape[-1] == 1:
                image = image[..., 0]
            image = Image.fromarray(image)
        return decoding.load_image(image)

    def explain(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Where the model looked for the class it predicts for each image: Grad-CAM heatmaps,
        float32 (N, H, W) in [0, 1] at the export's image size (final/explain.py).

        Raises:
            ExplainUnavailable: no layer of this model gives a map to explain with (the reason
                says why).
        """
        pixels = [self.load(image) for image in images]
        if not pixels:
            _, size, _ = self.manifest_.input_shape
            return np.zeros((0, size, size), dtype=np.float32)
        return self.explain_pixels(np.stack(pixels)).maps

    def explain_pixels(self, pixels: np.ndarray) -> Explanation:
        """`explain` for already decoded uint8 pixels (N, H, W, C), with the class each map
        explains and the layer it read."""
        return explain(self.model_, self.manifest_.preprocessing.to_tensor(pixels))

    @torch.no_grad()
    def predict_proba_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities for already decoded uint8 pixels (N, H, W, C)."""
        outputs = []
        device = next(self.model_.parameters()).device  # where `load` put it
        model = self.served_
        for start in range(0, len(pixels), BATCH_SIZE):
            x = self.manifest_.preprocessing.to_tensor(pixels[start : start + BATCH_SIZE])
            probs = torch.softmax(model(x.to(device)).float(), dim=1)
            outputs.append(probs.cpu().numpy())
        return np.concatenate(outputs)


def load(export_dir: str | Path, device: str = "cpu") -> Predictor:
    """Load an export directory written by `autoclf best --export` (no pickle involved), to
    predict on `device` (`cpu`, `cuda`, `cuda:N`, `auto`; see train/device.py).

    An ensemble export (model.json lists `members`) loads as one `Ensemble` module, so the
    Predictor and everything using it average the members without knowing it.

    Raises:
        ExportError: not an export, a damaged one, or one made by a newer autoclf.
        DeviceError: `device` is not on this machine.
    """
    on = resolve_device(device)  # before reading anything: a missing GPU is the first error
    folder = Path(export_dir)
    manifest_path, weights = folder / MANIFEST_FILE, folder / MODEL_FILE
    for required in (manifest_path, weights):
        if not required.is_file():
            raise ExportError(
                f"{folder} is not an autoclf export: {required.name} is missing (make one with "
                "`autoclf best SPEC --export DIR`)"
            )
    manifest = read_manifest(manifest_path)  # an older format migrated, a newer one refused
    if not manifest.members:
        model = _load_member(manifest.config, weights, manifest_path, manifest)
        return Predictor(model_=model.to(on).eval(), manifest_=manifest)
    members = [
        _load_member(member.config, folder / member.file, manifest_path, manifest)
        for member in manifest.members
    ]
    shares = [member.weight for member in manifest.members]
    ensemble = Ensemble(
        members,
        [member.preprocessing for member in manifest.members],
        None if None in shares else [w for w in shares if w is not None],  # older: equal
    )
    return Predictor(model_=ensemble.to(on).eval(), manifest_=manifest)


def _load_member(
    config: TrialConfig, weights: Path, manifest_path: Path, manifest: ExportManifest
) -> nn.Module:
    """Build the network `config` describes and load `weights` into it."""
    if not weights.is_file():
        raise ExportError(f"{weights}: missing, but {MANIFEST_FILE} lists it; {DAMAGED}")
    channels, size, _ = manifest.input_shape
    try:
        model = build_model(
            config.model,
            n_classes=len(manifest.classes),
            in_chans=channels,
            image_size=size,
            load_pretrained=False,
        )
    except (AutoclfError, RuntimeError, ValueError, KeyError) as exc:  # e.g. an unknown backbone
        raise ExportError(
            f"{manifest_path}: cannot build the model it describes ({_first_line(exc)}); {DAMAGED}"
        ) from None
    _load_weights(model, weights, manifest)
    return model


def _load_weights(model: nn.Module, weights: Path, manifest: ExportManifest) -> None:
    """Load the tensors into `model`, after checking the file's header against its shapes (so a
    mismatch is named, not a page of torch's state-dict errors)."""
    try:
        with safe_open(str(weights), framework="pt") as handle:
            names = handle.keys()
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in names}
    except (SafetensorError, OSError) as exc:
        raise ExportError(
            f"{weights}: not a readable safetensors file ({_first_line(exc)}); {DAMAGED}"
        ) from None
    channels, size, _ = manifest.input_shape
    described = f"{len(manifest.classes)} classes, {channels} channel(s), {size} px"
    for key, tensor in model.state_dict().items():
        if key in shapes and shapes[key] != tuple(tensor.shape):
            raise ExportError(
                f"{weights}: tensor {key!r} has shape {shapes[key]}, but the model that "
                f"{MANIFEST_FILE} describes ({described}) needs {tuple(tensor.shape)}; {DAMAGED}"
            )
    try:
        load_model(model, str(weights), strict=True)
    except (RuntimeError, SafetensorError) as exc:  # missing or unexpected tensors, bad data
        reason = " ".join(str(exc).split())[:300]
        raise ExportError(
            f"{weights}: does not fit {MANIFEST_FILE} ({reason}); {DAMAGED}"
        ) from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def iter_image_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, and every image file under given folders (recursively, sorted).

    Anything under a folder named like an image but not a folder is listed, a FIFO or a broken
    link included: decoding refuses it with its reason without reading it, so nothing the user
    pointed at disappears from the output without a word.
    """
    from automl_clf.data.discover import is_image_file

    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*")) if is_image_file(p) and not p.is_dir())
        else:
            found.append(path)
    return found


def answers(
    probabilities: np.ndarray, classes: Sequence[str], min_confidence: float | None
) -> list[str]:
    """Each row's most probable class, or `unsure` where its probability is below
    `min_confidence` (None: never)."""
    best = probabilities.argmax(axis=1)
    floor = -1.0 if min_confidence is None else min_confidence
    return [
        classes[int(i)] if row[i] >= floor else UNSURE
        for i, row in zip(best, probabilities, strict=True)
    ]


@dataclass(frozen=True)
class FilePrediction:
    path: Path
    predicted: str | None  # `unsure` below the minimum confidence; None: unreadable
    probability: float | None  # the most probable class's
    top_k: list[tuple[str, float]]  # (class, probability), most probable first
    error: str | None
    top_class: str | None = None  # the most probable class, whether or not `unsure`
    # the top probability is below the validation images' `ood.threshold`; None: the export
    # has no threshold, or the file could not be read
    ood: bool | None = None
    # where the top probability falls among the validation images' (0: below every one)
    ood_percentile: float | None = None


def predict_files(
    predictor: Predictor,
    files: Sequence[Path],
    top_k: int = 1,
    on_batch: Callable[[int], None] | None = None,
    min_confidence: float | None = None,
) -> list[FilePrediction]:
    """Predict each file, BATCH_SIZE at a time; an unreadable one gets an `error` and does not
    stop the others. `on_batch(n)` hears after each batch of n files (a progress bar).
    `min_confidence`: `unsure` below it (None: the export's default, 0: never)."""
    results: list[FilePrediction] = []
    threshold = predictor._threshold(min_confidence)
    for start in range(0, len(files), BATCH_SIZE):
        batch = files[start : start + BATCH_SIZE]
        results += _predict_batch(predictor, batch, top_k, threshold)
        if on_batch is not None:
            on_batch(len(batch))
    return results


def _predict_batch(
    predictor: Predictor, files: Sequence[Path], top_k: int, min_confidence: float | None
) -> list[FilePrediction]:
    decoded: list[tuple[int, np.ndarray]] = []
    errors: dict[int, str] = {}
    for index, path in enumerate(files):
        try:
            decoded.append((index, predictor.load(path)))
        except ImageError as exc:
            errors[index] = f"cannot read image: {exc.reason}"
    probabilities: dict[int, np.ndarray] = {}
    if decoded:
        stacked = predictor.predict_proba_pixels(np.stack([pixels for _, pixels in decoded]))
        probabilities = {index: row for (index, _), row in zip(decoded, stacked, strict=True)}
    classes = predictor.classes_
    ood = predictor.manifest_.ood
    results = []
    for index, path in enumerate(files):
        if index in errors:
            results.append(FilePrediction(path, None, None, [], errors[index]))
            continue
        probs = probabilities[index][None]
        order = np.argsort(-probs[0], kind="stable")[:top_k]
        ranked = [(classes[int(i)], float(probs[0, i])) for i in order]
        score = max_softmax(probs)
        results.append(
            FilePrediction(
                path,
                answers(probs, classes, min_confidence)[0],
                ranked[0][1],
                ranked,
                None,
                top_class=ranked[0][0],
                ood=None if ood is None else bool(ood.flags(score)[0]),
                ood_percentile=None if ood is None else float(ood.percentile_of(score)[0]),
            )
        )
    return results
