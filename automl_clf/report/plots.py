"""Report figures, drawn with matplotlib's non-interactive Agg backend (no display needed).

Each function writes one PNG; the HTML report embeds the same files, so what a terminal user
opens and what the page shows cannot differ.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from automl_clf.report.search import SearchSummary

DPI = 110
MAX_SIDE = 14.0  # inches: a confusion matrix of many classes stays a sane image
MAX_LABELLED = 60  # classes up to which a confusion matrix names each row and column
STATE_COLOURS = {"COMPLETE": "#2563eb", "PRUNED": "#f59e0b", "FAIL": "#dc2626"}


@contextlib.contextmanager
def _figure_grid(
    path: Path,
    size: tuple[float, float],
    rows: int = 1,
    columns: int = 1,
    height_ratios: list[float] | None = None,
) -> Iterator[tuple[Figure, np.ndarray]]:
    """A figure with a grid of axes, saved to `path` and closed (also on errors) at the end.

    Text is drawn as written: class names, paths and parameters are the user's, and
    matplotlib would otherwise typeset `$…$` in them as mathematics (or fail on bad TeX).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        grid = {"height_ratios": height_ratios}
        fig, axes = plt.subplots(rows, columns, figsize=size, squeeze=False, gridspec_kw=grid)
        try:
            yield fig, axes
            fig.tight_layout()
            fig.savefig(path, dpi=DPI)
        finally:
            plt.close(fig)


@contextlib.contextmanager
def _figure(path: Path, size: tuple[float, float]) -> Iterator[tuple[Figure, Axes]]:
    with _figure_grid(path, size) as (fig, axes):
        yield fig, axes[0, 0]


def plot_confusion_matrix(
    matrix: np.ndarray,
    classes: list[str],
    path: Path,
    *,
    normalized: bool = False,
    split: str = "test split",
) -> None:
    """Rows are the true class. Raw: counts, shaded by count. Normalised: each row's shares
    (the per-class recall on the diagonal), shaded by share."""
    n = len(classes)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    shade = shares if normalized else matrix
    size = min(MAX_SIDE, max(4.0, 0.45 * n + 2.0))
    with _figure(path, (size, size * 0.9)) as (fig, ax):
        vmax = 1.0 if normalized else max(1, int(matrix.max()))
        image = ax.imshow(shade, cmap="Blues", vmin=0.0, vmax=vmax)
        label = "share of the true class" if normalized else "images"
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=label)
        if n <= MAX_LABELLED:
            ax.set_xticks(range(n), labels=classes, rotation=45 if n > 6 else 0, ha="right")
            ax.set_yticks(range(n), labels=classes)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        kind = "normalised by true class" if normalized else "counts"
        ax.set_title(f"Confusion matrix, {kind} ({split})")
        if n <= 30:
            for i in range(n):
                for j in range(n):
                    text = f"{shares[i, j]:.2f}" if normalized else str(matrix[i, j])
                    dark = shade[i, j] > 0.5 * vmax
                    ax.text(
                        j,
                        i,
                        text,
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if dark else "black",
                    )


def plot_reliability(bins: list[dict[str, float]], ece: float, path: Path) -> None:
    """Accuracy per confidence bin against the diagonal (calibrated), each bin's mean confidence
    as a tick, and below it how many images fall in each bin."""
    filled = [b for b in bins if b["n"] > 0]
    width = 0.9 * (bins[0]["high"] - bins[0]["low"]) if bins else 0.06
    centres = [(b["low"] + b["high"]) / 2 for b in filled]
    size = (4.8, 5.0)
    with _figure_grid(path, size, rows=2, height_ratios=[3.0, 1.0]) as (_, axes):
        top, bottom = axes[0, 0], axes[1, 0]
        top.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="calibrated")
        top.bar(
            centres,
            [b["accuracy"] for b in filled],
            width=width,
            color="#2563eb",
            label="accuracy in the bin",
        )
        top.scatter(
            [b["confidence"] for b in filled],
            [b["confidence"] for b in filled],
            marker="_",
            s=160,
            color="#dc2626",
            linewidths=2,
            label="mean confidence",
            zorder=3,
        )
        top.set_xlim(0, 1)
        top.set_ylim(0, 1.02)
        top.set_ylabel("accuracy")
        top.set_title(f"Reliability diagram (ECE {ece:.3f})")
        # the counts pile up at high confidence, so their upper left is free for the legend
        bottom.legend(*top.get_legend_handles_labels(), loc="upper left", fontsize=7)
        bottom.bar(centres, [b["n"] for b in filled], width=width, color="#9ca3af")
        bottom.set_xlim(0, 1)
        bottom.set_xlabel("confidence (top probability)")
        bottom.set_ylabel("images")


def plot_history(summary: SearchSummary, path: Path) -> None:
    """Each trial's objective by trial number, the best so far as a line; a pruned trial at the
    last value it reported, a failed one on the axis."""
    with _figure(path, (6.4, 3.8)) as (_, ax):
        for state, marker in (("COMPLETE", "o"), ("PRUNED", "x")):
            points = [
                (r.number, r.value)
                for r in summary.trials
                if r.state == state and r.value is not None
            ]
            ax.scatter(
                [x for x, _ in points],
                [y for _, y in points],
                marker=marker,
                color=STATE_COLOURS[state],
                label=state.lower(),
                zorder=3,
            )
        failed = [r.number for r in summary.trials if r.state == "FAIL"]
        if failed:
            ax.scatter(
                failed,
                [0] * len(failed),
                marker="v",
                color=STATE_COLOURS["FAIL"],
                label="failed",
                transform=ax.get_xaxis_transform(),
            )
        best_x, best_y, best = [], [], None
        for row in summary.trials:
            if row.state == "COMPLETE" and row.value is not None:
                better = best is None or (
                    row.value < best if summary.direction == "minimize" else row.value > best
                )
                best = row.value if better else best
            if best is not None:
                best_x.append(row.number)
                best_y.append(best)
        if best_x:
            ax.step(
                best_x, best_y, where="post", color="#111827", linewidth=1.2, label="best so far"
            )
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trial numbers
        ax.set_xlabel("trial")
        ax.set_ylabel(summary.objective)
        ax.set_title("Optimisation history")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)


def plot_importances(importances: dict[str, float], path: Path) -> None:
    """Horizontal bars, the most important parameter on top."""
    names = list(importances)[::-1]
    with _figure(path, (6.0, max(2.2, 0.45 * len(names) + 1.2))) as (_, ax):
        ax.barh(names, [importances[n] for n in names], color="#2563eb")
        for i, name in enumerate(names):
            ax.text(importances[name], i, f" {importances[name]:.2f}", va="center", fontsize=8)
        ax.set_xlim(0, max(1.0, max(importances.values(), default=0.0) * 1.15))
        ax.set_xlabel("importance (fANOVA share of the objective's variance)")
        ax.set_title("Parameter importances")


def plot_image_grid(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    path: Path,
    *,
    title: str,
    columns: int = 8,
    cmap: str = "gray",
    symmetric: bool = False,
) -> None:
    """Small images in a grid with a caption each: mistakes, filters, feature maps.

    Args:
        images: (H, W) arrays of any range, or (H, W, 3) uint8 colour images.
        symmetric: shade 2-D images on a range symmetric around 0 (filter weights).
    """
    n = max(1, len(images))
    columns = min(columns, n)
    rows = math.ceil(n / columns)
    size = (1.6 * columns, 1.75 * rows + 0.5)
    with _figure_grid(path, size, rows, columns) as (fig, axes):
        for ax in axes.flat:
            ax.axis("off")
        for ax, image, caption in zip(axes.flat, images, captions, strict=False):
            kwargs: dict[str, Any] = {"interpolation": "nearest"}
            if image.ndim == 2:
                kwargs["cmap"] = "RdBu_r" if symmetric else cmap
                if symmetric:
                    limit = float(np.abs(image).max()) or 1.0
                    kwargs |= {"vmin": -limit, "vmax": limit}
            ax.imshow(image, **kwargs)
            ax.set_title(caption, fontsize=7)
        fig.suptitle(title, fontsize=10)
