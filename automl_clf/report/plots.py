"""Report figures, drawn with matplotlib's Agg renderer (no display needed).

Each `draw_*` function returns a `Figure`; `save_figure` writes it as a PNG. The HTML report
embeds the same files, so what a terminal user opens and what the page shows cannot differ.

Figures size themselves to what they hold: the text is measured (`text_size`, matplotlib's own
font metrics) and the figure made large enough for it, then matplotlib's constrained layout places
titles, labels and colour bars inside the canvas, so nothing is clipped. Class names, parameter
names and captions too long for their place are wrapped or shortened (with "…"); the report's
tables carry them in full. tests/report/test_plots.py draws every figure for 2, 4 long-named
and 100 classes and checks that no two texts overlap and none leaves the canvas.

Figures are made with `Figure`, not pyplot: nothing is kept in pyplot's global list of open
figures, so a failure part-way leaks nothing and threads need no lock.
"""

from __future__ import annotations

import functools
import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import numpy as np

from automl_clf.search.record import CUT_AT_DEADLINE, STATES, USABLE_STATES

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from automl_clf.report.content import AugmentedPreview, LearningCurve
    from automl_clf.report.search import SearchSummary

DPI = 110
# Text is drawn as written: class names, paths and parameters are the user's, and matplotlib
# would otherwise typeset `$…$` in them as mathematics (or fail on bad TeX). Matplotlib reads
# these when it makes a text, and it makes tick labels while saving, so both run under them.
PLAIN_TEXT: dict[Any, Any] = {"text.parse_math": False, "text.usetex": False}
STATE_COLOURS = {  # by trial_state (search/record.py)
    "complete": "#2563eb",
    CUT_AT_DEADLINE: "#0d9488",
    "pruned": "#f59e0b",
    "fail": "#dc2626",
}
TRAIN_COLOUR, VAL_COLOUR = "#2563eb", "#ea580c"

# Confusion matrices
MATRIX_SIDE = (3.0, 11.0)  # inches: the matrix's side at least / at most
ANNOTATE_CLASSES = 30  # classes up to which each cell shows its number
LABEL_WIDTH = 2.2  # inches: a class name on an axis is shortened (middle "…") beyond this
LINE = 1.3  # a line of text is this many times its font size high (points)
COLOUR_BAR = 0.22  # inches: the colour bar's width

# Image grids
CELL = 1.6  # inches: each image's column
CAPTION_FONT = 7.0
CAPTION_LINES = 3  # a caption is wrapped to this many lines at most
PREVIEW_COLUMNS = 8  # augmented images: rows of originals, each above the same augmented
HEATMAP_COLOURS = (
    "jet"  # Grad-CAM's convention: blue where the model did not look, red where it did
)
HEATMAP_WEIGHT = 0.5  # the heatmap's share of each overlaid pixel

P = ParamSpec("P")
R = TypeVar("R")


def _plain_text(draw: Callable[P, R]) -> Callable[P, R]:
    """Run `draw` with matplotlib reading text as written (see PLAIN_TEXT)."""

    @functools.wraps(draw)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        import matplotlib

        with matplotlib.rc_context(PLAIN_TEXT):
            return draw(*args, **kwargs)

    return wrapper


@_plain_text
def save_figure(fig: Figure, path: Path) -> Path:
    """Write `fig` as a PNG at DPI, as laid out (no cropping: the layout keeps text inside)."""
    fig.savefig(path, dpi=DPI)
    return path


def _new_figure(
    size: tuple[float, float], rows: int = 1, columns: int = 1, **grid: Any
) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure of `size` inches with a grid of axes (always 2-D)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, columns, squeeze=False, gridspec_kw=grid or None)


@functools.lru_cache(maxsize=4096)
def text_size(text: str, fontsize: float) -> tuple[float, float]:
    """Width and height in inches of one line of `text` at `fontsize` points, as matplotlib's
    Agg renderer draws it with the default font."""
    from matplotlib.font_manager import FontProperties

    width, height, _ = _renderer().get_text_width_height_descent(
        text, FontProperties(size=fontsize), ismath=False
    )
    return width / 72.0, height / 72.0  # the renderer works at 72 dpi: points


@functools.cache
def _renderer() -> Any:
    """A 1-pixel Agg renderer at 72 dpi, only for measuring text."""
    from matplotlib.backends.backend_agg import RendererAgg

    return RendererAgg(1, 1, 72)


def _line_height(fontsize: float) -> float:
    """Inches a line of text at `fontsize` needs, with its spacing."""
    return fontsize * LINE / 72.0


def shorten(text: str, width: float, fontsize: float) -> str:
    """`text` on one line no wider than `width` inches: its middle replaced by "…" if need be,
    so names that share a beginning (or an ending) stay apart."""
    text = " ".join(text.split())
    if text_size(text, fontsize)[0] <= width:
        return text
    keep = len(text)
    while keep > 1:
        keep -= 1
        head, tail = text[: (keep + 1) // 2], text[len(text) - keep // 2 :]
        if text_size(f"{head}…{tail}", fontsize)[0] <= width:
            return f"{head}…{tail}"
    return "…"


def wrap(text: str, width: float, fontsize: float, max_lines: int) -> str:
    """`text` wrapped to lines no wider than `width` inches, at most `max_lines` (the last one
    ends in "…" when text was left out). Words longer than a line are broken."""
    chars = max(1, int(width / max(text_size("x", fontsize)[0], 1e-6)))
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        while True:  # textwrap counts characters; narrow until the measured width fits
            pieces = textwrap.wrap(paragraph, chars, break_on_hyphens=False) or [""]
            if chars == 1 or all(text_size(p, fontsize)[0] <= width for p in pieces):
                break
            chars -= 1
        lines += pieces
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and text_size(last + "…", fontsize)[0] > width:
            last = last[:-1]
        lines = [*lines[: max_lines - 1], last.rstrip() + "…"]
    return "\n".join(lines)


def _title(fig: Figure, ax: Axes, text: str, fontsize: float = 10.0) -> None:
    """An axes title wrapped to the figure's width, so a narrow figure never clips it."""
    width = fig.get_figwidth() - 0.3
    ax.set_title(wrap(text, width, fontsize, max_lines=3), fontsize=fontsize)


@dataclass(frozen=True)
class MatrixLayout:
    """How a confusion matrix of these class names is drawn (see `matrix_layout`)."""

    labels: list[str]  # the class names, shortened to LABEL_WIDTH
    every: int  # every k-th class is named on the axes (1: all)
    tick_font: float  # points
    rotation: int  # of the predicted-class names: 0, 45 or 90 degrees
    cell_font: float | None  # of the per-cell numbers; None: no numbers (too many classes)
    side: float  # inches: the matrix
    size: tuple[float, float]  # inches: the figure


def matrix_layout(classes: Sequence[str], cell_texts: Sequence[str]) -> MatrixLayout:
    """Fit a confusion matrix to its class names and cell texts.

    The tick font shrinks with the class count; the cells are made big enough for a line of
    it (and, up to ANNOTATE_CLASSES classes, for the widest cell number), within MATRIX_SIDE;
    when even that is too small for every name, every k-th class is named. Predicted-class
    names lie flat when they fit under their column, else at 45 degrees, else upright.
    """
    n = len(classes)
    tick_font = 9.0 if n <= 12 else 8.0 if n <= 30 else 7.0 if n <= 60 else 6.0
    labels = [shorten(name, LABEL_WIDTH, tick_font) for name in classes]
    line = _line_height(tick_font)
    cell_font: float | None = None
    cell = line * 1.15
    if n <= ANNOTATE_CLASSES:
        cell_font = 11.0 if n <= 4 else 9.0 if n <= 12 else 7.0
        widest_number = max((text_size(t, cell_font)[0] for t in cell_texts), default=0.0)
        cell = max(cell, widest_number / 0.8, 0.42)
    side = min(max(n * cell, MATRIX_SIDE[0]), MATRIX_SIDE[1])
    cell = side / n
    if cell_font is not None:
        widest_number = max((text_size(t, cell_font)[0] for t in cell_texts), default=0.0)
        cell_font = max(5.0, min(cell_font, cell_font * 0.85 * cell / max(widest_number, 1e-6)))
    every = max(1, math.ceil(line / cell))
    widest = max(text_size(label, tick_font)[0] for label in labels)
    pitch = cell * every  # inches between named columns
    rotation = 0 if widest <= 0.9 * pitch else 45 if pitch * math.sqrt(0.5) >= line else 90
    below = {0: line, 45: (widest + line) * math.sqrt(0.5), 90: widest}[rotation]
    width = widest + 0.45 + side + 1.3  # y names, y label, matrix, colour bar
    height = 0.75 + side + below + 0.45  # title, matrix, x names, x label
    return MatrixLayout(labels, every, tick_font, rotation, cell_font, side, (width, height))


@_plain_text
def draw_confusion_matrix(
    matrix: np.ndarray,
    classes: list[str],
    *,
    normalized: bool = False,
    split: str = "test split",
) -> Figure:
    """Rows are the true class. Raw: counts, shaded by count. Normalised: each row's shares
    (the per-class recall on the diagonal), shaded by share. Sized by `matrix_layout`."""
    n = len(classes)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    shade = shares if normalized else matrix
    texts = [f"{v:.2f}" for v in shares.flat] if normalized else [str(v) for v in matrix.flat]
    layout = matrix_layout(classes, texts if n <= ANNOTATE_CLASSES else [])
    fig, axes = _new_figure(layout.size)
    ax = axes[0, 0]
    vmax = 1.0 if normalized else max(1, int(matrix.max()))
    # aspect "auto": constrained layout then owns the axes' box (an equal aspect would shrink
    # it after the layout, which can push labels off the canvas); `_square` squares the cells
    image = ax.imshow(shade, cmap="Blues", vmin=0.0, vmax=vmax, aspect="auto")
    label = "share of the true class" if normalized else "images"
    # an inset beside the matrix: exactly its height, COLOUR_BAR inches wide
    bar = ax.inset_axes((1.0 + 0.12 / layout.side, 0.0, COLOUR_BAR / layout.side, 1.0))
    colours = fig.colorbar(image, cax=bar, label=label)
    if not normalized:
        from matplotlib.ticker import MaxNLocator

        colours.locator = MaxNLocator(integer=True)  # counts of images
    named = list(range(0, n, layout.every))
    names = [layout.labels[i] for i in named]
    flat = {"rotation": 0, "ha": "center"}
    turned = {"rotation": layout.rotation, "ha": "right", "rotation_mode": "anchor"}
    ax.set_xticks(named, names, fontsize=layout.tick_font, **(turned if layout.rotation else flat))
    ax.set_yticks(named, names, fontsize=layout.tick_font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    kind = "normalised by true class" if normalized else "counts"
    shown = "" if layout.every == 1 else f"; every {layout.every}th class named"
    _title(fig, ax, f"Confusion matrix, {kind} ({split}{shown})")
    if layout.cell_font is not None:
        for (i, j), text in zip(np.ndindex(n, n), texts, strict=True):
            dark = shade[i, j] > 0.5 * vmax
            colour = "white" if dark else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=layout.cell_font, color=colour)
    _square(fig, ax)
    return fig


def _square(fig: Figure, ax: Axes) -> None:
    """Resize `fig` so that `ax` comes out square: constrained layout keeps its margins (in
    inches) when the figure changes size, so one correction suffices."""
    fig.canvas.draw()
    box = ax.get_position()
    width, height = fig.get_size_inches()
    excess = box.width * width - box.height * height  # inches
    if excess > 0:
        fig.set_size_inches(width - excess, height)
    else:
        fig.set_size_inches(width, height - excess)


@_plain_text
def draw_reliability(
    bins: list[dict[str, float]], ece: float, title: str = "Reliability diagram"
) -> Figure:
    """Accuracy per confidence bin against the diagonal (calibrated), each bin's mean confidence
    as a tick, and below it how many images fall in each bin; `title` is followed by the ECE."""
    filled = [b for b in bins if b["n"] > 0]
    width = 0.9 * (bins[0]["high"] - bins[0]["low"]) if bins else 0.06
    centres = [(b["low"] + b["high"]) / 2 for b in filled]
    fig, axes = _new_figure((4.8, 5.2), rows=2, height_ratios=[3.0, 1.0])
    top, bottom = axes[0, 0], axes[1, 0]
    top.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="calibrated")
    top.bar(
        centres,
        [b["accuracy"] for b in filled],
        width=width,
        color="#2563eb",
        label="accuracy in the bin",
    )
    confidence = [b["confidence"] for b in filled]
    top.scatter(
        confidence,
        confidence,
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
    _title(fig, top, f"{title} (ECE {ece:.3f})")
    # the counts pile up at high confidence, so their upper left is free for the legend
    bottom.legend(*top.get_legend_handles_labels(), loc="upper left", fontsize=7)
    bottom.bar(centres, [b["n"] for b in filled], width=width, color="#9ca3af")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (top probability)")
    bottom.set_ylabel("images")
    return fig


@_plain_text
def draw_accuracy_coverage(
    coverage: Sequence[float],
    accuracy: Sequence[float],
    target: float,
    reached: tuple[float, float] | None,
) -> Figure:
    """Accuracy of the answered test images against their share, the surest answered first;
    the target accuracy as a dashed line and, when some threshold reaches it, that point
    (`reached`: its coverage and accuracy)."""
    fig, axes = _new_figure((4.8, 3.6))
    ax = axes[0, 0]
    ax.plot(coverage, accuracy, color=TRAIN_COLOUR, linewidth=1.5, label="accuracy answered")
    ax.axhline(target, linestyle="--", color="grey", linewidth=1, label=f"target {target:g}")
    if reached is not None:
        ax.scatter(
            [reached[0]],
            [reached[1]],
            color=VAL_COLOUR,
            zorder=3,
            label=f"reached at {reached[0]:.0%} answered",
        )
    low = min([*accuracy, target]) if len(accuracy) else target
    ax.set_xlim(0, 1.0)
    ax.set_ylim(max(0.0, low - 0.02), 1.005)
    ax.set_xlabel("share of test images answered (the surest first)")
    ax.set_ylabel("accuracy on them")
    ax.legend(loc="lower left", fontsize=7)
    _title(fig, ax, "Accuracy against coverage")
    return fig


def _best_so_far(summary: SearchSummary) -> tuple[list[int], list[float]]:
    """The best usable value (complete or cut at the deadline) up to each trial number (from
    the first usable one on)."""
    xs: list[int] = []
    ys: list[float] = []
    best: float | None = None
    for row in summary.trials:
        if row.state in USABLE_STATES and row.value is not None:
            better = best is None or (
                row.value < best if summary.direction == "minimize" else row.value > best
            )
            best = row.value if better else best
        if best is not None:
            xs.append(row.number)
            ys.append(best)
    return xs, ys


@_plain_text
def draw_history(summary: SearchSummary) -> Figure:
    """Each trial's objective by trial number, the best so far as a line; a trial the deadline
    cut at its best epoch's value, a pruned one at the last value it reported, a failed one on
    the axis."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = _new_figure((6.4, 3.9))
    ax = axes[0, 0]
    for state, marker in (("complete", "o"), (CUT_AT_DEADLINE, "s"), ("pruned", "x")):
        points = [
            (r.number, r.value) for r in summary.trials if r.state == state and r.value is not None
        ]
        if not points:
            continue
        ax.scatter(
            [x for x, _ in points],
            [y for _, y in points],
            marker=marker,
            color=STATE_COLOURS[state],
            label=STATES[state],
            zorder=3,
        )
    failed = [r.number for r in summary.trials if r.state == "fail"]
    if failed:
        ax.scatter(
            failed,
            [0] * len(failed),
            marker="v",
            color=STATE_COLOURS["fail"],
            label=STATES["fail"],
            transform=ax.get_xaxis_transform(),
        )
    best_x, best_y = _best_so_far(summary)
    if best_x:
        ax.step(best_x, best_y, where="post", color="#111827", linewidth=1.2, label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trial numbers
    ax.set_xlabel("trial")
    ax.set_ylabel(shorten(summary.objective, 3.0, 10.0))
    _title(fig, ax, "Optimisation history")
    fig.legend(loc="outside right upper", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


@_plain_text
def draw_importances(importances: dict[str, float], n_trials: int) -> Figure:
    """Horizontal bars, the most important parameter on top; parameter names sized into the
    figure's width."""
    names = list(importances)[::-1]
    shown = [shorten(name, 3.5, 9.0) for name in names]
    widest = max((text_size(name, 9.0)[0] for name in shown), default=1.0)
    fig, axes = _new_figure((widest + 4.6, max(2.4, 0.42 * len(names) + 1.5)))
    ax = axes[0, 0]
    ax.barh(range(len(names)), [importances[n] for n in names], color="#2563eb")
    ax.set_yticks(range(len(names)), shown, fontsize=9)
    for i, name in enumerate(names):
        ax.text(importances[name], i, f" {importances[name]:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, max(1.0, max(importances.values(), default=0.0) * 1.15))
    ax.set_xlabel("fANOVA share of the objective's variance")
    _title(fig, ax, f"Parameter importances (fANOVA, {n_trials} complete trials)")
    return fig


@_plain_text
def draw_learning_curves(curves: Sequence[LearningCurve]) -> Figure:
    """Loss (left) and accuracy (right) per epoch: train in blue, validation in orange; the
    first curve (the exported trial during the search) solid, a second (its final retrain)
    dashed; a dotted line at the first curve's best epoch, the one kept."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = _new_figure((10.0, 4.3), columns=2)
    loss, accuracy = axes[0, 0], axes[0, 1]
    styles = ("-", "--", ":")
    for curve, style in zip(curves, styles, strict=False):
        for ax, train, val in (
            (loss, curve.train_loss, curve.val_loss),
            (accuracy, curve.train_accuracy, curve.val_accuracy),
        ):
            _series(ax, train, f"{curve.label}: train", TRAIN_COLOUR, style)
            _series(ax, val, f"{curve.label}: validation", VAL_COLOUR, style)
    best = curves[0].best_epoch if curves else None
    for ax, name in ((loss, "loss (cross-entropy)"), (accuracy, "accuracy")):
        if best is not None:
            ax.axvline(best, color="#6b7280", linestyle=":", linewidth=1.2, label="_best")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    accuracy.set_ylim(-0.02, 1.02)
    _title(fig, loss, "Loss per epoch")
    _title(fig, accuracy, "Accuracy per epoch")
    handles, labels = loss.get_legend_handles_labels()
    if best is not None:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="#6b7280", linestyle=":"))
        labels.append(f"best epoch ({best}): the weights kept")
    labels = [shorten(label, 4.2, 8.0) for label in labels]
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8)
    return fig


def _series(ax: Axes, values: Sequence[float | None], label: str, colour: str, style: str) -> None:
    """One metric per epoch (1-based); epochs without a value leave a gap."""
    if not values or all(v is None for v in values):
        return
    ys = [math.nan if v is None else v for v in values]
    marker = "o" if len(ys) <= 30 else None
    ax.plot(range(1, len(ys) + 1), ys, style, color=colour, label=label, marker=marker, ms=3)


def draw_augmented(preview: AugmentedPreview) -> Figure:
    """Rows of training images (captioned with their class), each above the same images as the
    augmentation made them (captioned "augmented", or with the classes a MixUp/CutMix mixed)."""
    n = len(preview.classes)
    columns = min(PREVIEW_COLUMNS, n)
    images: list[np.ndarray | None] = []
    captions: list[str] = []
    for start in range(0, n, columns):
        part = slice(start, start + columns)
        blank = columns - len(preview.classes[part])
        for pixels, texts in (
            (preview.originals[part], preview.classes[part]),
            (preview.augmented[part], preview.mixes[part]),
        ):
            images += [_displayable(p) for p in pixels] + [None] * blank
            captions += [*texts, *[""] * blank]
    title = "Training images, each row above the same images as the training saw them"
    return draw_image_grid(images, captions, title=title, columns=columns)


def _displayable(pixels: np.ndarray) -> np.ndarray:
    """uint8 (H, W, C) as imshow takes it: (H, W) for one channel."""
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def overlay_heatmap(pixels: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """The image under its heatmap, as uint8 (H, W, 3).

    Args:
        pixels: uint8 (H, W), (H, W, 1) or (H, W, 3), as decoded for the model.
        heatmap: (H, W) in [0, 1] (final/explain.py), coloured blue (0) to red (1) as
            pytorch-grad-cam's `show_cam_on_image` does, at HEATMAP_WEIGHT of each pixel.
    """
    import matplotlib

    image = pixels.astype(np.float32) / 255.0
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    colours = matplotlib.colormaps[HEATMAP_COLOURS](np.clip(heatmap, 0.0, 1.0))[..., :3]
    mixed = (1.0 - HEATMAP_WEIGHT) * image + HEATMAP_WEIGHT * colours
    return np.asarray(np.round(mixed * 255.0), dtype=np.uint8)


@_plain_text
def draw_image_grid(
    images: Sequence[np.ndarray | None],
    captions: Sequence[str],
    *,
    title: str,
    columns: int = 8,
    cmap: str = "gray",
    symmetric: bool = False,
) -> Figure:
    """Small images in a grid with a caption each (wrapped to its column, CAPTION_LINES at
    most): mistakes, augmented images, filters, feature maps.

    Args:
        images: (H, W) arrays of any range, or (H, W, 3) uint8 colour images; None leaves
            its cell empty.
        symmetric: shade 2-D images on a range symmetric around 0 (filter weights).
    """
    n = max(1, len(images))
    columns = min(columns, n)
    rows = math.ceil(n / columns)
    fitted = [wrap(c, CELL - 0.1, CAPTION_FONT, CAPTION_LINES) for c in captions]
    lines = max((c.count("\n") + 1 for c in fitted), default=1)
    width = max(CELL * columns, 4.0)
    heading = wrap(title, width - 0.3, 10.0, 3)
    height = rows * (CELL + lines * _line_height(CAPTION_FONT)) + (heading.count("\n") + 1) * 0.3
    fig, axes = _new_figure((width, height), rows, columns)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, fitted, strict=False):
        if image is None:
            continue
        kwargs: dict[str, Any] = {"interpolation": "nearest"}
        if image.ndim == 2:
            kwargs["cmap"] = "RdBu_r" if symmetric else cmap
            if symmetric:
                limit = float(np.abs(image).max()) or 1.0
                kwargs |= {"vmin": -limit, "vmax": limit}
            elif image.dtype == np.uint8:  # pixels: black is 0, not the image's darkest
                kwargs |= {"vmin": 0, "vmax": 255}
        ax.imshow(image, **kwargs)
        ax.set_title(caption, fontsize=CAPTION_FONT)
    fig.suptitle(heading, fontsize=10)
    return fig
