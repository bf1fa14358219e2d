"""The shared conformance checks (automl_clf/testing.py), run over every registered sampler,
storage scheme and export format: a kind added to its registry is checked here with no new
test. And the checks catch what they are for: a sampler that ignores its seed, a format that
gives other answers."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from torch import nn

import automl_clf
from automl_clf.final.formats import FORMATS, ExportFormat, Logits
from automl_clf.search.storage import STORAGES
from automl_clf.spec.samplers import SAMPLERS, RandomSamplerSpec
from automl_clf.testing import check_export_format, check_sampler, check_storage
from tests.conftest import StudyStorage


@pytest.mark.parametrize("kind", SAMPLERS.kinds)
def test_every_sampler_conforms(kind: str, tmp_path: Path) -> None:
    check_sampler(kind, tmp_path)


def test_every_storage_scheme_is_checked() -> None:
    from tests.conftest import STORAGE_MODES

    assert set(STORAGE_MODES) == set(STORAGES.kinds)


def test_every_storage_conforms(study_storage: StudyStorage) -> None:
    check_storage(study_storage.url, study_storage.name)


@pytest.mark.parametrize("name", FORMATS.kinds)
def test_every_export_format_conforms(name: str, tmp_path: Path) -> None:
    check_export_format(name, tmp_path)


def test_a_sampler_that_ignores_its_seed_fails_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unseeded(self: RandomSamplerSpec, seed: int, *, study_seed: int) -> optuna.Sampler:
        return optuna.samplers.RandomSampler()

    monkeypatch.setattr(RandomSamplerSpec, "build", unseeded)
    with pytest.raises(AssertionError, match="random: the same seed proposed other trials"):
        check_sampler("random", tmp_path)


class _Negated(ExportFormat):
    """A format whose runtime gives the negated logits: it must not pass."""

    file = "model.negated"

    @staticmethod
    def write(model: nn.Module, example: torch.Tensor, path: Path) -> None:
        torch.save(model.state_dict(), path)
        _Negated.model = model  # type: ignore[attr-defined]

    @staticmethod
    def load(path: Path) -> Logits:
        model = _Negated.model  # type: ignore[attr-defined]

        def run(images: torch.Tensor) -> np.ndarray:
            with torch.no_grad():
                return -model(images).numpy()

        return run


def test_a_format_that_gives_other_logits_fails_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FORMATS, "_entries", {**dict(FORMATS.items()), "negated": _Negated})
    with pytest.raises(AssertionError, match="negated: logits differ from the eager model"):
        check_export_format("negated", tmp_path)


def test_nothing_in_the_package_imports_the_testing_module() -> None:
    package = Path(automl_clf.__file__).parent
    importers = []
    for path in package.rglob("*.py"):
        if path.name == "testing.py" and path.parent == package:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                names = [module, *(f"{module}.{alias.name}" for alias in node.names)]
            if "automl_clf.testing" in names:
                importers.append(str(path.relative_to(package)))
    assert importers == []
