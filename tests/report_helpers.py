"""Shared by the report tests and docs/make_screenshots.py: image folders with real-looking class
names (2, 4 long-named, 100), a check that a figure's texts neither overlap nor leave the
canvas, and headless Chromium screenshots of a report page."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# scikit-learn's digits 0, 1, 7 and 9 written under long names like skimage's sample images
LONG_NAMES = {
    0: "astronaut_eileen_collins_in_orbit",
    1: "chelsea_the_tabby_cat",
    7: "coffee_cup_on_a_saucer",
    9: "hubble_deep_field_galaxies",
}
TWO_NAMES = {3: "three", 8: "eight"}


def write_named_digits(folder: Path, names: dict[int, str], per_class: int) -> Path:
    """scikit-learn's digits `names` keys, each in a folder named by its value (a folder that
    holds them already is left as it is)."""
    from automl_clf.datasets import write_digits

    if all((folder / name).is_dir() for name in names.values()):
        return folder
    write_digits(folder, classes=list(names), per_class=per_class)
    for digit, name in names.items():
        (folder / str(digit)).rename(folder / name)
    return folder


def synthetic_class_names(n: int) -> list[str]:
    """n distinct names of mixed lengths, as a real many-class data set has."""
    words = ["oak", "red_maple", "silver_birch", "norway_spruce", "european_beech", "ash"]
    return [f"{i:03d}_{words[i % len(words)]}" for i in range(n)]


def write_synthetic_classes(folder: Path, n_classes: int, per_class: int, side: int = 8) -> Path:
    """`n_classes` classes of grayscale `side`-px images, in groups of 5 alike: each class a
    fixed pattern (its group's plus a little of its own), each image that pattern with noise,
    so a small CNN learns most of them in a few epochs and confuses some within a group."""
    rng = np.random.default_rng(0)
    groups = rng.random((math.ceil(n_classes / 5), side, side)) * 255
    for i, name in enumerate(synthetic_class_names(n_classes)):
        pattern = groups[i // 5] + rng.normal(0, 45, (side, side))
        (folder / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            noisy = np.clip(pattern + rng.normal(0, 45, pattern.shape), 0, 255)
            Image.fromarray(noisy.astype(np.uint8), mode="L").save(folder / name / f"{k}.png")
    return folder


def text_problems(fig: object) -> list[str]:
    """Every pair of drawn texts of `fig` whose boxes intersect, and every text that reaches
    past the canvas, as the PNG would show them (drawn at the figure's own dpi).

    A rotated text is checked as the rotated rectangle it covers (its axis-aligned box
    overlaps its neighbours' at 45 degrees without the glyphs touching). Tick labels the figure
    does not draw (outside the axis range, or of a hidden axis) are left out.
    """
    import matplotlib

    from automl_clf.report.plots import PLAIN_TEXT

    with matplotlib.rc_context(PLAIN_TEXT):
        fig.canvas.draw()  # type: ignore[attr-defined]
    boxes = _drawn_text_boxes(fig)
    width, height = fig.bbox.width, fig.bbox.height  # type: ignore[attr-defined]
    problems = [
        f"{text!r} leaves the canvas"
        for text, corners in boxes
        if corners.min() < -0.5
        or corners[:, 0].max() > width + 0.5
        or corners[:, 1].max() > height + 0.5
    ]
    for i, (first, a) in enumerate(boxes):
        for second, b in boxes[i + 1 :]:
            if not _separated(a, b):
                problems.append(f"{first!r} overlaps {second!r}")
    return problems


def _drawn_text_boxes(fig: object) -> list[tuple[str, np.ndarray]]:
    """(text, 4 corners in pixels) of every visible, non-empty text the figure draws."""
    from matplotlib.axes import Axes
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    undrawn = set()
    for ax in fig.findobj(Axes):  # type: ignore[attr-defined]  # inset axes (colour bars) too
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                inside = low - 1e-9 <= tick.get_loc() <= high + 1e-9
                if not (ax.axison and axis.get_visible() and inside):
                    undrawn |= {id(tick.label1), id(tick.label2)}
    boxes = []
    for text in fig.findobj(Text):  # type: ignore[attr-defined]
        if not text.get_visible() or not text.get_text().strip() or id(text) in undrawn:
            continue
        box = text.get_window_extent(renderer)
        angle = math.radians(text.get_rotation() % 180)
        if angle and "\n" not in text.get_text():
            w, h, _ = renderer.get_text_width_height_descent(
                text.get_text(), text.get_fontproperties(), ismath=False
            )
            cos, sin = math.cos(angle), math.sin(angle)
            half = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
            centre = [(box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2]
            corners = half @ np.array([[cos, sin], [-sin, cos]]) + centre
        else:
            corners = np.array(
                [[box.x0, box.y0], [box.x1, box.y0], [box.x1, box.y1], [box.x0, box.y1]]
            )
        boxes.append((text.get_text(), corners))
    return boxes


def _separated(a: np.ndarray, b: np.ndarray, slack: float = 1.0) -> bool:
    """Whether two convex quadrilaterals are apart (a separating axis among their edges'
    normals); touching within `slack` pixels counts as apart."""
    for polygon in (a, b):
        for i in range(4):
            edge = polygon[(i + 1) % 4] - polygon[i]
            normal = np.array([-edge[1], edge[0]]) / (np.hypot(*edge) or 1.0)
            pa, pb = a @ normal, b @ normal
            if pa.max() <= pb.min() + slack or pb.max() <= pa.min() + slack:
                return True
    return False


def chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def section_page(page: Path, section: str) -> Path:
    """A copy of report page `page` showing only its title, navigation and `section` (an id):
    headless Chromium's screenshots start at the top of a page and ignore a #fragment."""
    style = f"<style>main > *:not(#{section}) {{ display: none; }}</style></head>"
    copy = page.with_name(f"{page.stem}.{section}.html")
    copy.write_text(page.read_text(encoding="utf-8").replace("</head>", style, 1), "utf-8")
    return copy


def screenshot(
    browser: str, page: str, shot: Path, size: tuple[int, int], profile: Path
) -> subprocess.CompletedProcess[str]:
    """Headless Chromium's screenshot of `page` (a URL) at `size` (width, height) pixels,
    written to `shot`."""
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--screenshot={shot}",
        f"--window-size={size[0]},{size[1]}",
        page,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
