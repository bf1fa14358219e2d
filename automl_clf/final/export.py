"""Write an export directory: the model, its preprocessing, extra formats, and the report.

    DIR/model.safetensors         the weights (tensors only, no pickle): what `load` reads
    DIR/model.json                classes, architecture, preprocessing, trial config, versions,
                                  the data fingerprint, and each extra format's parity check
    DIR/model.pt                  TorchScript, for runtimes without autoclf (final/formats.py)
    DIR/model.onnx                ONNX, likewise
    DIR/spec.yaml                 the spec fixed to the exported trial (final/provenance.py)
    DIR/report/                   metrics.json, index.html, report.md, figures (report/write.py)
    DIR/autoclf_export.json       what autoclf wrote, written last (final/folder.py)

The directory is built beside DIR and swapped into place at the end (final/folder.py): DIR is
only ever replaced when it is an unchanged autoclf export, and an interrupted export leaves the
previous one whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from safetensors.torch import save_model

from automl_clf.data.batches import eval_batches
from automl_clf.final.folder import staged_export
from automl_clf.final.formats import FormatCheck, write_formats
from automl_clf.final.manifest import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    MODEL_FILE,
    REPORT_DIR,
    ExportManifest,
    library_versions,
)
from automl_clf.final.provenance import SPEC_FILE, data_fingerprint
from automl_clf.final.retrain import FinalResult, trial_config
from automl_clf.models.factory import measure_latency_ms
from automl_clf.report import (
    DataSummary,
    FinalSummary,
    ReportContent,
    SeedSummary,
    summarise_search,
    write_report,
)
from automl_clf.report.metrics import summary_metrics
from automl_clf.spec.models import Spec
from automl_clf.train.trainer import EVAL_BATCH_SIZE


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    report: Path  # the report folder
    formats: dict[str, FormatCheck]
    latency_ms: float  # one image, eager, on the CPU


def write_export(
    result: FinalResult, out_dir: Path, spec: Spec, study: optuna.Study | None = None
) -> ExportResult:
    """Write `out_dir` (replacing an earlier, unchanged autoclf export there); see the module
    docstring.

    Args:
        study: the study the trial came from, summarised in the report (optional).

    Raises:
        ExportError: `out_dir` holds anything but an unchanged autoclf export (it is left as it
            is; `final.folder.check_replaceable` says so before the retrain).
    """
    out_dir = out_dir.resolve()
    with staged_export(out_dir) as staging:
        (staging / REPORT_DIR).mkdir()
        formats, latency = _write(result, staging, spec, study)
    return ExportResult(out_dir, out_dir / REPORT_DIR, formats, latency)


def _write(
    result: FinalResult, folder: Path, spec: Spec, study: optuna.Study | None
) -> tuple[dict[str, FormatCheck], float]:
    model = result.trained.fit.model.cpu().eval()
    save_model(model, str(folder / MODEL_FILE))
    pre = result.trained.preprocessing
    classes = result.dataset.classes
    channels, size = pre.decoding.channels, pre.decoding.image_size
    formats = write_formats(
        model, lambda: (x for x, _ in eval_batches(result.test_data, EVAL_BATCH_SIZE, pre)), folder
    )
    latency = measure_latency_ms(model, channels, size, torch.device("cpu"))
    fingerprint = data_fingerprint(result.dataset)
    study_name = spec.study.name or "study"
    manifest = ExportManifest(
        format_version=FORMAT_VERSION,
        classes=classes,
        architecture=result.config.model.backbone,
        n_params=result.trained.n_params,
        input_shape=(channels, size, size),
        preprocessing=pre,
        config=result.config,
        study=study_name,
        trial=result.trial.number,
        trained_epochs=result.epochs,
        train_on=result.train_on,
        versions=library_versions(),
        seed=result.seed,
        augmentation=result.trained.augmentation,
        data_fingerprint=fingerprint,
        formats=formats,
    )
    (folder / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
    (folder / SPEC_FILE).write_text(result.spec_yaml)
    dataset = result.dataset
    content = ReportContent(
        title=study_name,
        classes=classes,
        data=DataSummary(
            root=str(dataset.root),
            presplit=dataset.presplit,
            counts=dataset.counts(),
            skipped=[(str(s.path), s.reason) for s in dataset.skipped],
            fingerprint=fingerprint.sha256,
            n_files=fingerprint.n_files,
        ),
        search=summarise_search(study) if study is not None else None,
        final=FinalSummary(
            trial=result.trial.number,
            objective=spec.study.metric,
            objective_value=result.trial.values[0],  # the first objective of several
            params=dict(result.trial.params),
            config=result.config.model_dump(mode="json"),
            backbone=result.config.model.backbone,
            n_params=result.trained.n_params,
            latency_ms=latency,
            epochs=result.epochs,
            train_on=result.train_on,
            class_weighting=_class_weighting(result),
            seed=result.seed,
            seeds=[
                SeedSummary(run.seed, summary_metrics(run.val) if run.val is not None else None)
                for run in result.seed_runs
            ],
            preprocessing=pre.model_dump(mode="json"),
            formats={name: check.model_dump() for name, check in formats.items()},
        ),
        test=result.test,
        test_paths=result.test_data.paths,
        test_pixels=result.test_data.pixels,
        tta_views=result.tta,
        test_tta=result.test_tta,
    )
    write_report(content, folder / REPORT_DIR)
    return formats, latency


def _class_weighting(result: FinalResult) -> str:
    """The retrain's class weighting, and the trial's when the final section changed it."""
    ran = result.config.train.class_weighting
    searched = trial_config(result.trial).train.class_weighting
    if ran == searched:
        return ran
    return f"{ran} (final.class_weighting; trial #{result.trial.number} trained with {searched})"
