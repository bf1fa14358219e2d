"""Write an export directory: the model, its preprocessing, extra formats, and the report.

    DIR/model.safetensors         the weights (tensors only, no pickle): what `load` reads; of
                                  member 0 (the best trial) in an ensemble
    DIR/members/<k>.safetensors   an ensemble's further members (final.ensemble > 1)
    DIR/model.json                classes, architecture, preprocessing (and its steps spelled
                                  out), trial config, versions, the data fingerprint, whether it
                                  was retrained, the CPU latency and how it was measured, each
                                  extra format's parity check, an ensemble's members, the
                                  temperature, predict's minimum confidence and the
                                  out-of-distribution threshold (final/calibration.py)
    DIR/model.pt                  TorchScript of the whole model (an ensemble: the averaged
                                  graph; calibrated: divided by the temperature), for runtimes
                                  without autoclf (final/formats.py)
    DIR/model.onnx                ONNX, likewise
    DIR/spec.yaml                 the spec fixed to the exported trial (final/provenance.py)
    DIR/report/                   metrics.json, index.html, report.md, figures (with
                                  heatmaps: final/explain.py), written by the report room
                                  (report/final.py) from model.json
    DIR/autoclf_export.json       what autoclf wrote, written last (final/folder.py)

The directory is built beside DIR and swapped into place at the end (final/folder.py): DIR is
only ever replaced when it is an unchanged autoclf export, and an interrupted export leaves the
previous one whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_model
from torch import nn

from automl_clf.data.batches import eval_batches
from automl_clf.data.preprocess import Preprocessing
from automl_clf.final.allowance import Allowance
from automl_clf.final.explain import Explanation, explain
from automl_clf.final.folder import export_folder, staged_export
from automl_clf.final.formats import FormatCheck, write_formats
from automl_clf.final.manifest import (
    MANIFEST_FILE,
    REPORT_DIR,
    ExportManifest,
    LatencyRecord,
    MemberRecord,
    SelectionRecord,
    library_versions,
    member_file,
)
from automl_clf.final.provenance import SPEC_FILE, data_fingerprint
from automl_clf.final.retrain import FinalResult, Member
from automl_clf.models.factory import LATENCY_THREADS, measure_latency_ms
from automl_clf.spec.models import Spec
from automl_clf.train.trainer import EVAL_BATCH_SIZE
from automl_clf.versions import MODEL_JSON, TRIAL_CONFIG


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    report: Path  # the report folder
    formats: dict[str, FormatCheck]
    latency: LatencyRecord  # one image, eager, on the CPU: the whole (ensemble) model

    @property
    def latency_ms(self) -> float:
        return self.latency.ms


# Grad-CAM heatmaps of decoded test images for the report: uint8 pixels (N, H, W, C) ->
# Explanation (final/explain.py); each call is timed as the final step's "heatmaps" part.
Explainer = Callable[[np.ndarray], Explanation]


HEATMAP_IMAGES = 32  # at most: the report's 16 mistakes and 16 class examples (report/content.py)
HEATMAP_PASSES = 3  # a heatmap's cost in batch-1 forward passes: forward, backward, layer probe
FIGURES_START_SHARE = 0.25  # of the figures' estimate: the report's figures start if it fits


@dataclass(frozen=True)
class ReportParts:
    """The optional parts of the report that the time budget left room for."""

    figures: bool  # the plots (False: the text and tables only)
    explain: Explainer | None = None  # heatmaps, drawn with the figures; None: none made
    time_left: Callable[[], bool] | None = None  # asked before each figure (None: draw all)
    left_out: list[str] = field(default_factory=list)  # the figures `time_left` stopped


# Writes the report into the folder given, from the export's manifest (report/final.py), with
# the optional parts given. A parameter, not an import: the report room reads the final room's
# results, not the reverse.
ReportWriter = Callable[[ExportManifest, Path, ReportParts], None]


def write_export(
    result: FinalResult,
    out_dir: Path,
    spec: Spec,
    *,
    report: ReportWriter | None = None,
    allowance: Allowance | None = None,
) -> ExportResult:
    """Write `out_dir` (replacing an earlier, unchanged autoclf export there); see the module
    docstring.

    Args:
        report: writes `DIR/report/` inside the staged export, so the report is swapped into
            place with the model it describes (`report.final.final_report`).
        allowance: the time left under a budget (final/allowance.py): the extra formats, the
            report's figures and its heatmaps are written only when they fit, and what is left
            out is added to `result.skipped`. None: everything is written.

    Raises:
        ExportError: `out_dir` holds anything but an unchanged autoclf export (it is left as it
            is; `final.folder.check_replaceable` says so before the retrain).
    """
    out_dir = export_folder(out_dir)
    allowance = allowance if allowance is not None else Allowance.unlimited()
    with staged_export(out_dir) as staging:
        (staging / REPORT_DIR).mkdir()
        formats, latency = _write(result, staging, spec, report, allowance)
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
    result: FinalResult,
    folder: Path,
    spec: Spec,
    report: ReportWriter | None,
    allowance: Allowance,
) -> tuple[dict[str, FormatCheck], LatencyRecord]:
    model = result.served.cpu().eval()  # calibrated: what the formats and `load` serve
    skipped_before = len(allowance.skipped)
    with allowance.timed("write"):
        for k, member in enumerate(result.members):  # member 0's weights are model.safetensors
            path = folder / member_file(k)
            path.parent.mkdir(exist_ok=True)
            save_model(member.model, str(path))
    first, pre = result.first, result.preprocessing
    classes = result.dataset.classes
    channels, size = pre.decoding.channels, pre.decoding.image_size
    with allowance.timed("latency"):
        latency = cpu_latency(model, channels, size)  # before the formats run onnxruntime
    formats = write_formats(
        model,
        lambda: (x for x, _ in eval_batches(result.test_data, EVAL_BATCH_SIZE, pre)),
        folder,
        allowance=allowance,
        reserve_s=allowance.reserve_s("write", "figures", "heatmaps"),
    )
    # the figures are drawn one by one and stop at the deadline (`time_left` below), so they
    # start while the first of them fit: gated on all of them, they were left out whole with
    # their whole estimate left (digits at 60 s beside 4 busy loops: 3.0 s and 3.0 s left)
    figures_s, text_s = allowance.estimate("figures"), allowance.reserve_s("write")
    figures = report is not None and (
        allowance.fits(FIGURES_START_SHARE * figures_s, reserve_s=text_s)
        or allowance.allows("the report's figures", figures_s, reserve_s=text_s)
    )
    heatmaps = figures and allowance.allows(
        "the report's heatmaps",
        heatmaps_estimate_s(allowance, latency),
        reserve_s=allowance.reserve_s("write", "figures"),
    )
    result.skipped.extend(allowance.skipped[skipped_before:])  # the report names them
    fingerprint = data_fingerprint(result.dataset)
    weights = getattr(result.model, "weights", None)  # an Ensemble's, normalised
    study_name = spec.study.name or "study"
    manifest = ExportManifest(
        format_version=MODEL_JSON.version,
        config_version=TRIAL_CONFIG.version,
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
        members=[
            _member_record(k, m, None if weights is None else weights[k])
            for k, m in enumerate(result.members)
        ]
        if result.is_ensemble
        else [],
        selection=SelectionRecord.of(result.selection) if result.selection else None,
        preprocessing_steps=pre.steps(),
        calibration=result.calibration,
        min_confidence=spec.final.min_confidence,
        ood=result.ood,
    )
    with allowance.timed("write"):
        (folder / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
        (folder / SPEC_FILE).write_text(result.spec_yaml)
    if report is not None:
        explain = _explainer(model, pre, allowance) if heatmaps else None
        text_s = allowance.reserve_s("write")  # the report's text comes after its figures
        parts = ReportParts(figures, explain, lambda: allowance.fits(0.0, reserve_s=text_s))
        with allowance.timed("figures" if figures else "write"):  # less the heatmaps' time
            report(manifest, folder / REPORT_DIR, parts)
        if parts.left_out:  # drawing ran slower than planned (a busy machine)
            result.skipped.append(
                f"the report's figures {', '.join(parts.left_out)} (the time budget ran out "
                "while drawing)"
            )
    return formats, latency


def heatmaps_estimate_s(allowance: Allowance, latency: LatencyRecord) -> float:
    """Seconds the report's heatmaps should take: as this study measured them before, else the
    prior plus, per image, a forward and a backward pass at the model's CPU latency (a large
    model at 224 px takes seconds where the plain CNN takes milliseconds)."""
    if "heatmaps" in {**allowance.costs, **allowance.measured}:
        return allowance.estimate("heatmaps")
    return allowance.estimate("heatmaps") + HEATMAP_IMAGES * HEATMAP_PASSES * latency.ms / 1000.0


def _explainer(model: nn.Module, pre: Preprocessing, allowance: Allowance) -> Explainer:
    """Heatmaps of the exported model for decoded pixels, timed as "heatmaps"."""

    def explain_pixels(pixels: np.ndarray) -> Explanation:
        with allowance.timed("heatmaps"):
            return explain(model, pre.to_tensor(pixels))

    return explain_pixels


def _member_record(k: int, member: Member, weight: float | None) -> MemberRecord:
    return MemberRecord(
        weight=weight,
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
