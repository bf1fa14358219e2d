"""The report's tables and sentences as plain text, shared by the HTML and Markdown renderers, so
both say the same thing in the same words."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from automl_clf.report.content import ReportContent
from automl_clf.report.search import IMPORTANCE_METHOD, SearchSummary, TrialRow
from automl_clf.search.record import CUT_AT_DEADLINE, STATES, counts_text

METRICS = (  # label, metrics.json key
    ("accuracy", "accuracy"),
    ("balanced accuracy", "balanced_accuracy"),
    ("macro F1", "macro_f1"),
    ("log loss", "log_loss"),
)
N_CONFUSED = 10  # the most frequent confusions listed
NO_AUGMENTATION = (
    "The final model trained without augmentation (augment.policy none, no custom transforms, "
    "no MixUp or CutMix)."
)


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


def number(value: Any, digits: int = 4) -> str:
    """Floats to `digits` significant digits, everything else as str; None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def duration(seconds: float) -> str:
    """`42 s`, `3 min 05 s`, `1 h 02 min`."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def weights_source(trial: int, retrained: bool, train_on: str, epochs: int) -> str:
    """Where a model's weights come from, in the words the report and the CLI use."""
    if retrained:
        return f"retrained on {train_on} for {epochs} epoch(s)"
    return f"trial #{trial}'s best epoch (not retrained)"


def headline(content: ReportContent) -> str:
    final, metrics = content.final, content.metrics
    if final.members:
        numbers = ", ".join(f"#{m.trial}" for m in final.members)
        what = (
            f"An ensemble of {len(final.members)} trials ({numbers}; the mean of their "
            "probabilities)"
        )
    elif final.retrained:
        what = (
            f"Trial #{final.trial} ({final.backbone}, {final.n_params:,} parameters), "
            f"{weights_source(final.trial, True, final.train_on, final.epochs)}"
        )
    else:
        what = (
            f"Trial #{final.trial}'s best epoch ({final.backbone}, {final.n_params:,} "
            "parameters; not retrained)"
        )
    text = (
        f"{what}, tested once on {metrics['n_images']} held-out images: accuracy "
        f"{metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f}."
    )
    single = metrics.get("single")
    if single:
        text += (
            f" Trial #{single['trial']} alone: accuracy {single['accuracy']:.4f}, macro F1 "
            f"{single['macro_f1']:.4f}."
        )
    return text


def test_metrics_table(content: ReportContent) -> Table:
    """Test metrics, with the ensemble's best member alone beside an ensemble's, and a TTA
    column when the spec asked for TTA."""
    metrics = content.metrics
    tta, single = metrics.get("tta"), metrics.get("single")
    header = ["metric", f"test (ensemble of {len(content.final.members)})" if single else "test"]
    if single:
        header.append(f"trial #{single['trial']} alone")
    if tta:
        header.append(f"test with TTA ({' + '.join(tta['views'])})")
    rows = []
    for label, key in METRICS:
        row = [label, f"{metrics[key]:.4f}"]
        row += [f"{extra[key]:.4f}" for extra in (single, tta) if extra]
        rows.append(row)
    blank = [""] * (len(header) - 2)
    for k, value in metrics["top_k_accuracy"].items():
        if k != "1":
            rows.append([f"top-{k} accuracy", f"{value:.4f}", *blank])
    ece = f"{metrics['expected_calibration_error']:.4f}"
    rows.append(["expected calibration error", ece, *blank])
    return Table(header, rows)


def calibration_table(content: ReportContent) -> Table | None:
    """The test (and validation) numbers before and after temperature scaling; None when the
    model was exported uncalibrated."""
    scaling = content.metrics.get("temperature_scaling")
    if scaling is None:
        return None
    rows = [
        [
            "test expected calibration error",
            f"{scaling['test_expected_calibration_error_before']:.4f}",
            f"{scaling['test_expected_calibration_error_after']:.4f}",
        ],
        [
            "test log loss",
            f"{scaling['test_log_loss_before']:.4f}",
            f"{scaling['test_log_loss_after']:.4f}",
        ],
        [
            f"validation log loss (fitted on, {scaling['n_images']} images)",
            f"{scaling['val_log_loss_before']:.4f}",
            f"{scaling['val_log_loss_after']:.4f}",
        ],
    ]
    return Table(["", "before (T = 1)", f"after (T = {scaling['temperature']:.3g})"], rows)


def calibration_sentences(content: ReportContent) -> list[str]:
    """How the probabilities were calibrated, or why they were not."""
    scaling = content.metrics.get("temperature_scaling")
    ece = content.metrics["expected_calibration_error"]
    if scaling is None:
        return [
            f"Expected calibration error {ece:.4f} (the count-weighted gap between confidence "
            "and accuracy over the confidence bins; 0 is perfectly calibrated). The "
            "probabilities are not calibrated (final.calibrate: none, or no validation "
            "predictions to fit on)."
        ]
    sentences = [
        f"Temperature scaling: the logits are divided by T = {scaling['temperature']:.4g}, "
        f"fitted to minimise the log loss on {scaling['fitted_on']}. Predictions and accuracy "
        "are unchanged; the probabilities predict, model.pt and model.onnx give are the "
        "calibrated ones.",
        f"Expected calibration error on the test split (the count-weighted gap between "
        f"confidence and accuracy over {len(content.metrics['calibration'])} confidence bins; "
        f"0 is perfectly calibrated): {scaling['test_expected_calibration_error_before']:.4f} "
        f"before, {scaling['test_expected_calibration_error_after']:.4f} after.",
    ]
    if scaling.get("note"):
        sentences.append(f"Note: {scaling['note']}.")
    return sentences


def coverage_table(content: ReportContent) -> Table:
    """Accuracy when only the surest share of the test images is answered."""
    rows = [
        [f"{row['coverage']:.0%}", f"{row['accuracy']:.4f}", f"{row['threshold']:.4f}"]
        for row in content.metrics["coverage"]["at"]
    ]
    return Table(["images answered", "accuracy on them", "confidence threshold"], rows)


def selective_sentences(content: ReportContent) -> list[str]:
    """The threshold that reaches the target accuracy, the export's minimum confidence and
    the out-of-distribution flag, one sentence each."""
    coverage = content.metrics["coverage"]
    target, reached = coverage["target_accuracy"], coverage["target"]
    if reached is None:
        sentences = [
            f"No confidence threshold reaches the target accuracy {target:g} "
            "(final.target_accuracy) on the test split: even the surest images alone miss it."
        ]
    else:
        floor = math.floor(reached["threshold"] * 1e6) / 1e6  # rounded down: answers the same
        sentences = [
            f"Target accuracy {target:g} (final.target_accuracy): answering only images with a "
            f"top probability of at least {floor:.6f} reaches {reached['accuracy']:.4f} on "
            f"{reached['coverage']:.1%} of the test images (the others unsure). It is read off "
            "the test split itself, so take it as a guide: autoclf predict --min-confidence "
            f"{floor:.6f} (or final.min_confidence) applies it."
        ]
    answered = coverage["min_confidence"]
    if answered is not None:
        sentences.append(
            f"The export's minimum confidence {answered['threshold']:g} (final.min_confidence; "
            f"predict's default) answers {answered['coverage']:.1%} of the test images, "
            f"{answered['accuracy']:.4f} of them right; the rest are unsure."
        )
    ood = content.metrics.get("ood")
    if ood is not None:
        sentences.append(
            f"Out of distribution: predict flags an image (ood) whose top probability is "
            f"below {ood['threshold']:.4f}, the {ood['percentile']:g}th percentile of the "
            f"validation images' ({ood['n_images']} images); {ood['test_flagged']:.1%} of the "
            "test images are flagged."
        )
    return sentences


def per_class_table(metrics: dict[str, Any]) -> Table:
    """From a metrics dict (report/metrics.py): the test split's, or a trial's validation."""
    rows = [
        [name, f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", str(r["support"])]
        for name, r in metrics["per_class"].items()
    ]
    return Table(["class", "precision", "recall", "F1", "support"], rows)


def confusion_table(content: ReportContent) -> Table:
    matrix = content.metrics["confusion_matrix"]
    rows = [
        [name, *(str(v) for v in row)] for name, row in zip(content.classes, matrix, strict=True)
    ]
    return Table(["true \\ predicted", *content.classes], rows)


def data_table(content: ReportContent) -> Table:
    counts = content.data.counts
    rows = [
        [name, *(str(c[i]) for c in counts.values()), str(sum(c[i] for c in counts.values()))]
        for i, name in enumerate(content.classes)
    ]
    rows.append(
        [
            "total",
            *(str(sum(c)) for c in counts.values()),
            str(sum(sum(c) for c in counts.values())),
        ]
    )
    return Table(["class", *counts, "all"], rows)


def model_table(content: ReportContent) -> Table:
    """The final model; an ensemble's per-member rows are in `members_table`."""
    final = content.final
    pre = final.preprocessing
    decoding = pre["decoding"]
    threads = f", {final.latency_threads} thread(s)" if final.latency_threads else ""
    latency = f"{final.latency_ms:.2f} ms per image (batch 1, CPU, eager{threads})"
    if final.members:
        total = sum(m.n_params for m in final.members)
        rows = [
            ["ensemble", f"{len(final.members)} members: the mean of their probabilities"],
            ["parameters", f"{total:,} in all"],
            ["latency", f"{latency}, the whole ensemble"],
        ]
    else:
        rows = [
            ["backbone", final.backbone],
            ["parameters", f"{final.n_params:,}"],
            ["latency", latency],
            [
                "trial",
                f"#{final.trial} ({final.objective} {number(final.objective_value)} on val)",
            ],
            [
                "weights",
                weights_source(final.trial, final.retrained, final.train_on, final.epochs),
            ],
            ["class weighting", final.class_weighting],
            [
                "seed",
                str(final.seed)
                + (f" (best of {len(final.seeds)})" if len(final.seeds) > 1 else ""),
            ],
        ]
    input_note = " (member 0's; each member re-normalises to its own)" if final.members else ""
    rows += [
        [
            "input",
            f"{decoding['image_size']}×{decoding['image_size']} px, "
            f"{decoding['channels']} channel(s), resize {decoding['resize']}",
        ],
        ["normalisation", f"mean {_floats(pre['mean'])}, std {_floats(pre['std'])}{input_note}"],
    ]
    return Table(["", ""], rows)


def members_table(content: ReportContent) -> Table | None:
    """An ensemble's members, best first; None for one model."""
    final = content.final
    if not final.members:
        return None
    rows = [
        [
            str(k),
            f"#{m.trial}",
            m.backbone,
            f"{m.n_params:,}",
            number(m.objective_value),
            weights_source(m.trial, m.retrained, m.train_on, m.epochs),
            m.class_weighting,
            f"mean {_floats(m.mean)}, std {_floats(m.std)}",
            "equal" if m.weight is None else f"{m.weight:.2f}",
        ]
        for k, m in enumerate(final.members)
    ]
    header = ["member", "trial", "backbone", "parameters", f"{final.objective} (val)"]
    return Table([*header, "weights", "class weighting", "normalisation", "share"], rows)


def params_table(content: ReportContent) -> Table:
    return Table(["parameter", "value"], [[k, number(v)] for k, v in content.final.params.items()])


def seeds_table(content: ReportContent) -> Table | None:
    """Validation metrics per retrain seed, with their spread; None for a single seed."""
    spread = content.metrics["seeds"]
    if len(spread["runs"]) < 2:
        return None
    rows = [
        [
            str(run["seed"]) + (" (exported)" if run["seed"] == spread["chosen"] else ""),
            *(f"{run[key]:.4f}" for _, key in METRICS),
        ]
        for run in spread["runs"]
    ]
    stats = spread.get("val", {})
    if stats:
        rows.append(
            [
                "mean ± std",
                *(f"{stats[key]['mean']:.4f} ± {stats[key]['std']:.4f}" for _, key in METRICS),
            ]
        )
    return Table(["seed", *(f"val {label}" for label, _ in METRICS)], rows)


def formats_table(content: ReportContent) -> Table:
    rows = [["safetensors + model.json", "model.safetensors", "reference (the Predictor's)"]]
    for name, check in content.final.formats.items():
        if check["ok"]:
            status = f"max |Δ logit| {check['max_abs_diff']:.2g} on {check['n_images']} images"
        else:
            status = f"NOT OK: {check['error']}"
        rows.append([name, check["file"], status])
    return Table(["format", "file", "parity with the eager model"], rows)


def search_sentences(search: SearchSummary) -> list[str]:
    """Trials by state, time spent, what pruning saved (the pruner's stops only) and what the
    time budget cut, one sentence each."""
    states = counts_text(search.counts)
    time = ", ".join(f"{STATES[s]} {duration(v)}" for s, v in search.seconds_by_state.items())
    sentences = [
        f"{len(search.trials)} trials ({states}), optimising {search.objective} "
        f"({search.direction}).",
        f"Time: {duration(search.wall_seconds)} from the first trial's start to the last one's "
        f"end; trial time by state: {time}.",
    ]
    n_pruned = search.counts.get("pruned", 0)
    if n_pruned:
        sentences.append(
            f"Pruning stopped {n_pruned} trial(s) after {search.pruned_epochs_run} epochs in "
            f"all, saving up to {search.pruned_epochs_saved} epochs (about "
            f"{duration(search.pruned_seconds_saved)} at those trials' own pace)."
        )
    n_cut = search.counts.get(CUT_AT_DEADLINE, 0)
    if n_cut:
        sentences.append(
            f"The time budget cut {n_cut} trial(s) after {search.cut_epochs_run} epochs in all; "
            "each keeps its best epoch and can be the final model."
        )
    failed = [r for r in search.trials if r.state == "fail"]
    if failed:
        reasons = "; ".join(f"#{r.number}: {_fail_reason(r)}" for r in failed[:5])
        sentences.append(f"Failed: {reasons}" + (" …" if len(failed) > 5 else "."))
    return sentences


def comparison_table(search: SearchSummary) -> Table | None:
    """The best and runner-up usable trials (complete or cut at the deadline) side by side."""
    ranked = search.ranked[:2]
    if not ranked:
        return None
    names = list(dict.fromkeys(name for row in ranked for name in row.params))
    header = [
        "",
        *(
            f"#{row.number}" + (" (best)" if i == 0 else " (runner-up)")
            for i, row in enumerate(ranked)
        ),
    ]
    rows = [[search.objective, *(number(row.value) for row in ranked)]]
    for key in ("val_accuracy", "val_macro_f1", "best_epoch", "n_params", "latency_ms"):
        rows.append([key, *(number(getattr(row.record, key)) for row in ranked)])  # the field
    rows.append(["seconds", *(f"{row.seconds:.1f}" for row in ranked)])
    rows += [[name, *(number(row.params.get(name)) for row in ranked)] for name in names]
    return Table(header, rows)


def trials_table(search: SearchSummary) -> Table:
    rows = [
        [
            f"#{r.number}",
            r.state_name,
            number(r.value),
            _epochs(r),
            f"{r.seconds:.1f}",
            " ".join(f"{k.rsplit('.', 1)[-1]}={number(v, 3)}" for k, v in r.params.items()),
        ]
        for r in search.trials
    ]
    return Table(["trial", "state", search.objective, "epochs", "seconds", "params"], rows)


def importance_sentences(search: SearchSummary) -> list[str]:
    """Why there are no importances (when there are none), and how they are computed."""
    why = [] if search.importances else [f"Parameter importances: {search.importance_note}."]
    return [*why, f"Method: {IMPORTANCE_METHOD}."]


def curve_sentences(content: ReportContent) -> list[str]:
    """What the learning curves show, one sentence per run, and how to read train accuracy."""
    sentences = []
    for curve in content.curves:
        if not curve.n_epochs:
            sentences.append(
                f"{curve.label}: no per-epoch history was recorded (an earlier autoclf)."
            )
            continue
        kept = f"; its best epoch, {curve.best_epoch}, is the one kept" if curve.best_epoch else ""
        checked = (
            "validated on val" if curve.val_loss or curve.val_accuracy else "no validation split"
        )
        sentences.append(f"{curve.label}: {curve.n_epochs} epoch(s), {checked}{kept}.")
    if any(curve.n_epochs for curve in content.curves):
        sentences.append(
            "Train loss and accuracy are averaged over each epoch's augmented (and mixed) batches "
            "while the weights changed; validation is measured after the epoch, unaugmented. So "
            "train can sit below validation when the augmentation is strong."
        )
    return sentences


def confused_pairs_table(content: ReportContent, n: int = N_CONFUSED) -> Table | None:
    """The `n` most frequent confusions (true class, predicted class), most images first; None
    when no test image is misclassified. With many classes, what the matrix cannot show."""
    matrix = np.asarray(content.metrics["confusion_matrix"])
    off = [(int(matrix[i, j]), i, j) for i, j in zip(*np.nonzero(matrix), strict=True) if i != j]
    if not off:
        return None
    totals = matrix.sum(axis=1)
    rows = [
        [content.classes[i], content.classes[j], str(count), f"{count / totals[i]:.1%}"]
        for count, i, j in sorted(off, key=lambda t: (-t[0], t[1], t[2]))[:n]
    ]
    return Table(["true", "predicted as", "images", "share of the true class"], rows)


def importances_table(search: SearchSummary) -> Table:
    return Table(
        ["parameter", "importance"], [[k, f"{v:.3f}"] for k, v in search.importances.items()]
    )


def skipped_table(content: ReportContent) -> Table:
    return Table(["file", "reason"], [[path, reason] for path, reason in content.data.skipped])


def mistakes_table(content: ReportContent) -> Table:
    rows = []
    for i in content.mistakes():
        probabilities = content.test.probabilities[i]
        predicted, true = int(probabilities.argmax()), int(content.test.labels[i])
        rows.append(
            [
                str(content.test_paths[i]),
                content.classes[true],
                content.classes[predicted],
                f"{probabilities[predicted]:.3f}",
                f"{probabilities[true]:.3f}",
            ]
        )
    return Table(["file", "true", "predicted", "p(predicted)", "p(true)"], rows)


def _fail_reason(row: TrialRow) -> str:
    reason = row.record.fail_reason
    return "?" if reason is None else reason


def _epochs(row: TrialRow) -> str:
    if row.epochs_run is None:
        return "–"
    return f"{row.epochs_run}/{row.max_epochs}" if row.max_epochs else str(row.epochs_run)


def _floats(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"
