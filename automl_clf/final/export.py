"""Write an export directory: the model, its preprocessing, extra formats, and the report.

    DIR/model.safetensors         the weights (tensors only, no pickle): what `load` reads; of
                                  member 0 (the best trial) in an ensemble
    DIR/members/<k>.safetensors   an ensemble's further members (final.ensemble > 1)
    DIR/model.json                classes, architecture, preprocessing, trial config, versions,
                                  the data fingerprint, whether it was retrained, the CPU latency
                                  and how it was measured, each extra format's parity check, and
                                  an ensemble's members
    DIR/model.pt                  TorchScript of the whole model (an ensemble: the averaged
                                  graph), for runtimes without autoclf (final/formats.py)
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
from torch import nn

from automl_clf.data.batches import eval_batches
from automl_clf.final.folder import staged_export
from automl_clf.final.formats import FormatCheck, write_formats
from automl_clf.final.manifest import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    REPORT_DIR,
    ExportManifest,
    LatencyRecord,
    MemberRecord,
    library_versions,
    member_file,
)
from automl_clf.final.provenance import SPEC_FILE, data_fingerprint
from automl_clf.final.retrain import FinalResult, Member, trial_config
from automl_clf.models.factory import LATENCY_THREADS, measure_latency_ms
from automl_clf.report import (
    DataSummary,
    FinalSummary,
    LearningCurve,
    MemberSummary,
    ReportContent,
    SeedSummary,
    summarise_search,
    write_report,
)
from automl_clf.report.metrics import summary_metrics
from automl_clf.report.preview import augmented_preview
from automl_clf.spec.models import FinalSpec, Spec
from automl_clf.train.trainer import EVAL_BATCH_SIZE


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    report: Path  # the report folder
    formats: dict[str, FormatCheck]
    latency: LatencyRecord  # one image, eager, on the CPU: the whole (ensemble) model

    @property
    def latency_ms(self) -> float:
        return self.latency.ms


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


def cpu_latency(model: nn.Module, channels: int, size: int) -> LatencyRecord:
    """The model's batch-1 CPU latency, measured as every trial's is (`measure_latency_ms`, with
    its thread count), and recorded with how it was measured.

    Call it before anything runs onnxruntime: its worker threads keep spinning for a while after
    a run and take the cores the timing needs (exports once reported 80 ms for a 0.3 ms model).
    """
    ms = measure_latency_ms(model, channels, size, torch.device("cpu"))
    method = f"{measure_latency_ms.__module__}.{measure_latency_ms.__qualname__}"
    return LatencyRecord(ms=ms, threads=LATENCY_THREADS, device="cpu", method=method)


def _write(
    result: FinalResult, folder: Path, spec: Spec, study: optuna.Study | None
) -> tuple[dict[str, FormatCheck], LatencyRecord]:
    model = result.model.cpu().eval()
    for k, member in enumerate(result.members):  # member 0's weights are model.safetensors
        path = folder / member_file(k)
        path.parent.mkdir(exist_ok=True)
        save_model(member.model, str(path))
    first, pre = result.first, result.preprocessing
    classes = result.dataset.classes
    channels, size = pre.decoding.channels, pre.decoding.image_size
    latency = cpu_latency(model, channels, size)  # before the formats run onnxruntime
    formats = write_formats(
        model, lambda: (x for x, _ in eval_batches(result.test_data, EVAL_BATCH_SIZE, pre)), folder
    )
    fingerprint = data_fingerprint(result.dataset)
    study_name = spec.study.name or "study"
    manifest = ExportManifest(
        format_version=FORMAT_VERSION,
        classes=classes,
        architecture=first.config.model.backbone,
        n_params=first.n_params,
        input_shape=(channels, size, size),
        preprocessing=pre,
        config=first.config,
        study=study_name,
        trial=first.trial.number,
        trained_epochs=first.epochs,
        train_on=first.train_on,
        versions=library_versions(),
        seed=first.seed,
        augmentation=first.augmentation,
        data_fingerprint=fingerprint,
        formats=formats,
        retrained=first.retrained,
        latency=latency,
        members=[_member_record(k, m) for k, m in enumerate(result.members)]
        if result.is_ensemble
        else [],
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
            trial=first.trial.number,
            objective=spec.study.metric,
            objective_value=first.trial.values[0],  # the first objective of several
            params=dict(first.trial.params),
            config=first.config.model_dump(mode="json"),
            backbone=first.config.model.backbone,
            n_params=first.n_params,
            latency_ms=latency.ms,
            epochs=first.epochs,
            train_on=first.train_on,
            class_weighting=_class_weighting(first, spec.final),
            seed=first.seed,
            seeds=[
                SeedSummary(run.seed, summary_metrics(run.val) if run.val is not None else None)
                for run in first.seed_runs
            ],
            preprocessing=pre.model_dump(mode="json"),
            formats={name: check.model_dump() for name, check in formats.items()},
            retrained=first.retrained,
            latency_threads=latency.threads,
            members=[_member_summary(m, spec.final) for m in result.members]
            if result.is_ensemble
            else [],
            notes=list(result.notes),
        ),
        test=result.test,
        test_paths=result.test_data.paths,
        test_pixels=result.test_data.pixels,
        tta_views=result.tta,
        test_tta=result.test_tta,
        test_single=result.test_single,
        curves=_learning_curves(first, spec.study.metric),
        augmented=augmented_preview(
            first.config,
            dataset,
            first.preprocessing,
            train_on=tuple(first.train_on.split("+")),
            seed=first.seed,
        ),
    )
    write_report(content, folder / REPORT_DIR)
    return formats, latency


def _learning_curves(member: Member, objective: str) -> list[LearningCurve]:
    """The member's trial as it trained in the search, then its final retrain (if retrained)."""
    curves = [LearningCurve.of_trial(member.trial, objective)]
    if member.history:
        label = f"final retrain ({member.train_on}, seed {member.seed})"
        curves.append(LearningCurve.of_epochs(label, member.history))
    return curves


def _member_record(k: int, member: Member) -> MemberRecord:
    return MemberRecord(
        file=member_file(k),
        trial=member.trial.number,
        architecture=member.config.model.backbone,
        config=member.config,
        preprocessing=member.preprocessing,
        trained_epochs=member.epochs,
        train_on=member.train_on,
        retrained=member.retrained,
        seed=member.seed,
        n_params=member.n_params,
        objective_value=member.trial.values[0],
    )


def _member_summary(member: Member, final: FinalSpec) -> MemberSummary:
    return MemberSummary(
        trial=member.trial.number,
        backbone=member.config.model.backbone,
        n_params=member.n_params,
        objective_value=member.trial.values[0],
        retrained=member.retrained,
        train_on=member.train_on,
        epochs=member.epochs,
        class_weighting=_class_weighting(member, final),
        mean=list(member.preprocessing.mean),
        std=list(member.preprocessing.std),
    )


def _class_weighting(member: Member, final: FinalSpec) -> str:
    """The class weighting these weights trained with, and why when it is not the final
    section's."""
    ran = member.config.train.class_weighting
    number = member.trial.number
    if not member.retrained:
        if final.class_weighting in ("searched", ran):
            return ran
        return (
            f"{ran} (as trial #{number} trained; not retrained, so final.class_weighting "
            f"{final.class_weighting} did not apply)"
        )
    searched = trial_config(member.trial).train.class_weighting
    if ran == searched:
        return ran
    return f"{ran} (final.class_weighting; trial #{number} trained with {searched})"
