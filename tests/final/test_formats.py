"""The extra export formats (TorchScript, ONNX) against the eager model, and the provenance files
(spec.yaml, the data fingerprint)."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from torch import nn

import automl_clf
from automl_clf.data.dataset import load_dataset
from automl_clf.final.formats import FORMATS, PARITY_TOLERANCE, write_formats
from automl_clf.final.provenance import data_fingerprint, resolved_spec_yaml
from automl_clf.spec import FixedParams, parse_spec
from automl_clf.spec.describe import describe_space
from automl_clf.spec.resolve import resolve
from tests.conftest import Ensembled, Exported, tiny_spec

LOADERS = {name: (form.file, form.load) for name, form in FORMATS.items()}  # every format


@pytest.fixture(scope="module")
def test_images(exported: Exported) -> tuple[torch.Tensor, np.ndarray]:
    """The export's test images, preprocessed as the Predictor does, and the eager logits (as
    the export serves them: calibrated)."""
    predictor = automl_clf.load(exported.folder)
    with (exported.folder / "report" / "test_predictions.csv").open() as handle:
        paths = [row["path"] for row in csv.DictReader(handle)]
    pixels = np.stack([predictor.load(path) for path in paths])
    images = predictor.manifest_.preprocessing.to_tensor(pixels)
    with torch.no_grad():
        logits = predictor.served_(images).numpy()
    return images, logits


@dataclass(frozen=True)
class SavedFormat:
    name: str
    file: str
    run: Callable[[torch.Tensor], np.ndarray]  # images -> logits, from the file alone


@pytest.fixture(params=sorted(LOADERS))
def saved(request: pytest.FixtureRequest, exported: Exported) -> SavedFormat:
    """Each extra format, loaded back from the export by its own runtime."""
    file, load = LOADERS[request.param]
    return SavedFormat(request.param, file, load(exported.folder / file))


def test_format_matches_the_eager_model_on_the_test_images(
    saved: SavedFormat, exported: Exported, test_images: tuple[torch.Tensor, np.ndarray]
) -> None:
    images, eager = test_images
    logits = saved.run(images)
    assert logits.shape == eager.shape == (len(images), 3)
    assert np.abs(logits - eager).max() <= PARITY_TOLERANCE
    check = json.loads((exported.folder / "model.json").read_text())["formats"][saved.name]
    assert check["ok"] and check["file"] == saved.file and check["n_images"] == len(images)
    assert check["max_abs_diff"] <= PARITY_TOLERANCE


def test_format_takes_any_batch_size(
    saved: SavedFormat, test_images: tuple[torch.Tensor, np.ndarray]
) -> None:
    images, eager = test_images
    for n in (1, 5):
        assert np.abs(saved.run(images[:n]) - eager[:n]).max() <= PARITY_TOLERANCE


class _BranchesOnItsInput(nn.Module):
    """Data-dependent control flow: a trace keeps one branch, torch.export refuses."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = x.flatten(1)[:, :3]
        return head if float(x.sum()) > 0 else -head


def test_a_format_that_disagrees_or_fails_is_recorded_and_removed(tmp_path: Path) -> None:
    positive = torch.rand(3, 1, 4, 4) + 0.1
    checks = write_formats(_BranchesOnItsInput(), lambda: [positive, -positive], tmp_path)
    torchscript, onnx = checks["torchscript"], checks["onnx"]
    assert not torchscript.ok and torchscript.max_abs_diff is not None
    assert torchscript.max_abs_diff > PARITY_TOLERANCE and "differ" in (torchscript.error or "")
    assert not onnx.ok and onnx.max_abs_diff is None and onnx.error
    assert "\x1b" not in onnx.error  # no terminal colour codes in model.json
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "model.onnx").exists()


def test_the_predictor_needs_neither_extra_format(exported: Exported, tmp_path: Path) -> None:
    copy = shutil.copytree(exported.folder, tmp_path / "export")
    (copy / "model.pt").unlink()
    (copy / "model.onnx").unlink()
    files = _test_paths(exported)[:5]
    assert automl_clf.load(copy).predict(files) == automl_clf.load(exported.folder).predict(files)


def test_spec_yaml_fixes_every_searched_value_to_the_trial(exported: Exported) -> None:
    spec = automl_clf.load_spec(exported.folder / "spec.yaml")
    manifest = json.loads((exported.folder / "model.json").read_text())
    assert describe_space(spec).params == []  # nothing left to search
    config = resolve(spec, optuna.create_study().ask())
    assert config.model_dump(mode="json") == manifest["config"]
    original = automl_clf.load_spec(exported.spec)
    assert spec.study.name == f"{original.study.name}-trial{manifest['trial']}"
    assert spec.study.storage != original.study.storage  # a search with it starts a new study


def test_spec_yaml_fixes_a_custom_list_picked_among_named_policies(
    digits_root: Path, tmp_path: Path
) -> None:
    custom = [{"name": "Affine", "rotate": [-10, 10], "p": 0.5}]
    raw = tiny_spec(digits_root, tmp_path, augment={"policy": {"choices": ["light", custom]}})
    spec = parse_spec(raw, base_dir=tmp_path)
    picked = {"model.dropout": 0.1, "model.cnn.filters": "[4]", "train.lr": 0.01}
    picked["augment.policy"] = json.dumps(custom, sort_keys=True)  # as Optuna stores it
    config = resolve(spec, FixedParams(picked))
    text = resolved_spec_yaml(spec, config, study="tiny", trial=0)
    fixed = parse_spec(yaml.safe_load(text), base_dir=tmp_path)
    assert describe_space(fixed).params == []  # the list is a literal now
    assert resolve(fixed, FixedParams({})) == config


def test_data_fingerprint_follows_file_contents_and_names(
    exported: Exported, tmp_path: Path
) -> None:
    spec = automl_clf.load_spec(exported.spec)
    recorded = json.loads((exported.folder / "model.json").read_text())["data_fingerprint"]
    assert data_fingerprint(load_dataset(spec.data)).sha256 == recorded["sha256"]

    root = shutil.copytree(spec.data.root, tmp_path / "data")
    copied = spec.data.model_copy(update={"root": root})
    assert data_fingerprint(load_dataset(copied)).sha256 == recorded["sha256"]  # place-free
    image = sorted((root / "7").iterdir())[0]
    image.write_bytes(image.read_bytes() + b"\0")  # the same picture, other bytes
    edited = data_fingerprint(load_dataset(copied)).sha256
    assert edited != recorded["sha256"]
    image.rename(image.with_name("renamed.png"))
    assert data_fingerprint(load_dataset(copied)).sha256 not in (edited, recorded["sha256"])


def _test_paths(exported: Exported | Ensembled) -> list[str]:
    with (exported.folder / "report" / "test_predictions.csv").open() as handle:
        return [row["path"] for row in csv.DictReader(handle)]


def test_an_ensembles_formats_are_the_averaged_graph(ensembled: Ensembled) -> None:
    """model.pt and model.onnx of an ensemble take the export's one preprocessed batch and give
    the log of the members' mean probabilities, as the eager ensemble does."""
    predictor = automl_clf.load(ensembled.folder)
    paths = _test_paths(ensembled)
    pixels = np.stack([predictor.load(path) for path in paths])
    images = predictor.manifest_.preprocessing.to_tensor(pixels)
    with torch.no_grad():
        eager = predictor.served_(images).numpy()  # calibrated, as the formats are traced
    probabilities = predictor.predict_proba_pixels(pixels)
    checks = json.loads((ensembled.folder / "model.json").read_text())["formats"]
    for name, (file, load) in LOADERS.items():
        assert checks[name]["ok"], checks[name]
        outputs = load(ensembled.folder / file)(images)
        assert np.abs(outputs - eager).max() <= PARITY_TOLERANCE, name
        # the log of the mean probability, divided by the temperature: softmax undoes both
        mean = np.exp(outputs * predictor.temperature_)
        assert np.allclose(mean.sum(axis=1), 1.0, atol=1e-5), name
        assert np.allclose(torch.softmax(torch.from_numpy(outputs), 1), probabilities, atol=1e-5)
