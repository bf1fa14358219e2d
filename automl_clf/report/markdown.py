"""`report.md`: the essentials of an export's report, readable in a terminal or a pull request."""

from __future__ import annotations

from typing import Any


def render_markdown(metrics: dict[str, Any], summary: dict[str, Any]) -> str:
    """`summary` holds the study name, trial number, params, epochs and data counts."""
    lines = [
        f"# autoclf report: {summary['study']}",
        "",
        f"Best trial **#{summary['trial']}** ({summary['objective']} "
        f"{summary['objective_value']:.4g} on validation), retrained on {summary['train_on']} "
        f"for {summary['epochs']} epoch(s), evaluated once on the held-out test split "
        f"({metrics['n_images']} images).",
        "",
        "| metric | test |",
        "|---|---|",
        f"| accuracy | {metrics['accuracy']:.4f} |",
        f"| balanced accuracy | {metrics['balanced_accuracy']:.4f} |",
        f"| macro F1 | {metrics['macro_f1']:.4f} |",
        f"| log loss | {metrics['log_loss']:.4f} |",
        "",
        "## Per class",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for name, row in metrics["per_class"].items():
        lines.append(
            f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} "
            f"| {row['support']} |"
        )
    lines += ["", "## Confusion matrix (rows = true, columns = predicted)", ""]
    classes = metrics["classes"]
    lines.append("| true \\ predicted | " + " | ".join(classes) + " |")
    lines.append("|---" * (len(classes) + 1) + "|")
    for name, row in zip(classes, metrics["confusion_matrix"], strict=True):
        lines.append(f"| **{name}** | " + " | ".join(str(v) for v in row) + " |")
    lines += ["", "![confusion matrix](confusion_matrix.png)", "", "## Configuration", ""]
    lines += [f"- `{key}`: {value}" for key, value in summary["params"].items()]
    lines += [
        "",
        f"Model: {summary['backbone']}, {summary['n_params']:,} parameters. "
        f"Data: {summary['counts']}.",
        "",
    ]
    return "\n".join(lines)
