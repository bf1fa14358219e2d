"""The export's report, assembled from the final result and the manifest the export wrote.

The final room trains and writes the model; this module turns what it produced (the
`FinalResult`, the export's `ExportManifest`: formats, latency, data fingerprint) and the study
into a `ReportContent` and writes it. `final_report` is what `final.export.write_export` is
given as its `report` writer, so the report lands in the staged export with its model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna

from automl_clf.errors import ExplainUnavailable
from automl_clf.final.audit import AuditResult
from automl_clf.final.export import Explainer, ReportParts, ReportWriter
from automl_clf.final.manifest import REPORT_DIR, ExportManifest
from automl_clf.final.retrain import FinalResult, Member, trial_config
from automl_clf.report.content import (
    DataSummary,
    FinalSummary,
    Heatmaps,
    LearningCurve,
    MemberSummary,
    ReportContent,
    SeedSummary,
)
from automl_clf.report.duplicates import summarise_near_duplicates
from automl_clf.report.metrics import ece, summary_metrics
from automl_clf.report.preview import augmented_preview
from automl_clf.report.search import summarise_search
from automl_clf.report.write import write_report
from automl_clf.spec.models import FinalSpec, Spec


def final_report(
    result: FinalResult,
    spec: Spec,
    study: optuna.Study | None,
    audit: AuditResult | None = None,
) -> ReportWriter:
    """The writer of `result`'s report (`study`, when given, is summarised in it too, and
    `audit`, the label audit `run` made, gets its section)."""

    def write(manifest: ExportManifest, folder: Path, parts: ReportParts) -> None:
        content = report_content(result, spec, study, manifest, audit)
        if parts.figures and parts.explain is not None:
            content.heatmaps = report_heatmaps(content, parts.explain)
        write_report(
            content,
            folder,
            figures=parts.figures,
            time_left=parts.time_left,
            left_out=parts.left_out,
        )

    return write


def report_heatmaps(content: ReportContent, explain: Explainer) -> Heatmaps:
    """Heatmaps of the test images the report shows: its mistakes and class examples.

    A model that cannot be explained, or whose explanation fails, gets a note instead: the
    heatmaps are an optional part of the report, and the model and its report are written
    whatever happens to them.
    """
    indices = sorted({*content.mistakes(), *content.examples()})
    if not indices:
        return Heatmaps({}, "", [])
    pixels = np.stack([content.test_pixels[i] for i in indices])
    try:
        explanation = explain(pixels)
    except ExplainUnavailable as exc:
        return Heatmaps({}, "", [f"no heatmaps: {exc}"])
    except (RuntimeError, ValueError) as exc:  # an architecture Grad-CAM trips over
        reason = " ".join(str(exc).split())[:300]
        return Heatmaps({}, "", [f"no heatmaps: Grad-CAM failed on this model ({reason})"])
    maps = dict(zip(indices, explanation.maps, strict=True))
    return Heatmaps(maps, explanation.layer, explanation.notes)


def report_content(
    result: FinalResult,
    spec: Spec,
    study: optuna.Study | None,
    manifest: ExportManifest,
    audit: AuditResult | None = None,
) -> ReportContent:
    """Everything the report shows, gathered from the final step and the export's record."""
    first, pre, dataset = result.first, result.preprocessing, result.dataset
    fingerprint = manifest.data_fingerprint
    assert fingerprint is not None  # write_export records it; only older manifests lack it
    return ReportContent(
        title=manifest.study,
        classes=manifest.classes,
        data=DataSummary(
            root=str(dataset.root),
            presplit=dataset.presplit,
            counts=dataset.counts(),
            skipped=[(str(s.path), s.reason) for s in dataset.skipped],
            fingerprint=fingerprint.sha256,
            n_files=fingerprint.n_files,
        ),
        search=summarise_search(study) if study is not None else None,
        final=_final_summary(result, spec, manifest),
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
            pre,
            train_on=tuple(first.train_on.split("+")),
            seed=first.seed,
        ),
        calibration=manifest.calibration.model_dump() if manifest.calibration else None,
        test_uncalibrated=result.test_uncalibrated,
        ood=manifest.ood.model_dump(exclude={"quantiles"}) if manifest.ood else None,
        min_confidence=manifest.min_confidence,
        target_accuracy=spec.final.target_accuracy,
        label_issues=audit,
        near_duplicates=summarise_near_duplicates(dataset),
    )


@dataclass(frozen=True)
class CalibrationChange:
    """What temperature scaling did on the test split (a benchmark's numbers): the expected
    calibration error and log loss before and after; temperature 1 and equal numbers for a
    model exported uncalibrated."""

    temperature: float
    ece_before: float
    ece_after: float
    log_loss_before: float
    log_loss_after: float


def calibration_change(result: FinalResult) -> CalibrationChange:
    """From a final result (`retrain`'s), before anything is written."""
    after = result.test
    before = result.test_uncalibrated or after
    calibration = result.calibration
    return CalibrationChange(
        temperature=1.0 if calibration is None else calibration.temperature,
        ece_before=ece(before.probabilities, before.labels),
        ece_after=ece(after.probabilities, after.labels),
        log_loss_before=before.loss,
        log_loss_after=after.loss,
    )


def export_calibration_change(export_dir: str | Path) -> CalibrationChange:
    """From an export's report/metrics.json (written by this version of autoclf or later)."""
    metrics = json.loads((Path(export_dir) / REPORT_DIR / "metrics.json").read_text())
    scaling = metrics.get("temperature_scaling")
    if scaling is None:  # exported uncalibrated
        ece_now, loss = metrics["expected_calibration_error"], metrics["log_loss"]
        return CalibrationChange(1.0, ece_now, ece_now, loss, loss)
    return CalibrationChange(
        temperature=scaling["temperature"],
        ece_before=scaling["test_expected_calibration_error_before"],
        ece_after=scaling["test_expected_calibration_error_after"],
        log_loss_before=scaling["test_log_loss_before"],
        log_loss_after=scaling["test_log_loss_after"],
    )


def _final_summary(result: FinalResult, spec: Spec, manifest: ExportManifest) -> FinalSummary:
    first, latency = result.first, manifest.latency
    assert latency is not None  # write_export measures it before writing the manifest
    return FinalSummary(
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
        preprocessing=result.preprocessing.model_dump(mode="json"),
        formats={name: check.model_dump() for name, check in manifest.formats.items()},
        retrained=first.retrained,
        latency_threads=latency.threads,
        members=[
            _member_summary(m, spec.final, weight)
            for m, weight in zip(result.members, _shares(manifest), strict=True)
        ]
        if result.is_ensemble
        else [],
        notes=[*result.notes, *_skipped(result.skipped)],
    )


def _learning_curves(member: Member, objective: str) -> list[LearningCurve]:
    """The member's trial as it trained in the search, then its final retrain (if retrained)."""
    curves = [LearningCurve.of_trial(member.trial, objective)]
    if member.history:
        label = f"final retrain ({member.train_on}, seed {member.seed})"
        curves.append(LearningCurve.of_epochs(label, member.history))
    return curves


def _shares(manifest: ExportManifest) -> list[float | None]:
    return [member.weight for member in manifest.members]


def _skipped(skipped: list[str]) -> list[str]:
    """The report's note on what the time budget left out of the final step, if anything."""
    return [f"left out to keep the time budget: {'; '.join(skipped)}"] if skipped else []


def _member_summary(member: Member, final: FinalSpec, weight: float | None) -> MemberSummary:
    return MemberSummary(
        weight=weight,
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
