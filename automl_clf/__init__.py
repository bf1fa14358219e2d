"""autoclf: declarative hyperparameter search for CNN image classifiers.

The path a spec takes: spec → data → model → trial → study → final model → report/export →
predict. The public API mirrors the CLI:

    spec = load_spec("specs/digits.yaml")
    search(spec)                           # create or resume the study
    export_best(spec, "exports/digits")    # retrain the best trial, test, export
    load("exports/digits").predict(["some.png"])
"""

from __future__ import annotations

import os

# albumentations asks the network for a newer version when imported, unless told not to (it
# reads this once, at import). Pretrained weights are the one thing autoclf may download, the
# way timm does, and HF_HUB_OFFLINE=1 forbids that too (models/pretrained.py).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl_clf.errors import (
    AutoclfError,
    DataError,
    ExportError,
    SpecError,
    StorageError,
    StudyError,
    TrialFailed,
)

if TYPE_CHECKING:
    from automl_clf.final.predictor import Predictor
    from automl_clf.search.run import SearchResult
    from automl_clf.spec.models import Spec

__all__ = [
    "AutoclfError",
    "DataError",
    "ExportError",
    "SpecError",
    "StorageError",
    "StudyError",
    "TrialFailed",
    "export_best",
    "load",
    "load_spec",
    "search",
]


def load_spec(path: str | Path, **overrides: Any) -> Spec:
    """Read and validate a spec file (see `automl_clf.spec.load.load_spec`)."""
    from automl_clf.spec.load import load_spec as _load_spec

    return _load_spec(path, **overrides)


def search(spec: Spec, **options: Any) -> SearchResult:
    """Create or resume the spec's study (see `automl_clf.search.run.run_search`)."""
    from automl_clf.search.run import run_search

    return run_search(spec, **options)


def export_best(spec: Spec, out_dir: str | Path, trial: int | None = None) -> Path:
    """Retrain the best (or given) trial, evaluate on test, write the export; returns the report
    folder."""
    from automl_clf.final.export import write_export
    from automl_clf.final.folder import check_replaceable
    from automl_clf.final.retrain import retrain
    from automl_clf.search.study import load_existing_study

    assert spec.study.storage is not None and spec.study.name is not None
    check_replaceable(Path(out_dir).resolve())  # refuse before the retrain, not after it
    study = load_existing_study(spec.study.storage, spec.study.name)
    final = retrain(spec, study, trial)
    return write_export(final, Path(out_dir), spec, study).report


def load(export_dir: str | Path, device: str = "cpu") -> Predictor:
    """Load an exported model as a `Predictor` (predict / predict_proba / classes_) that runs
    on `device` (`cpu`, `cuda`, `cuda:N` or `auto`)."""
    from automl_clf.final.predictor import load as _load

    return _load(export_dir, device)
