"""Bundled real data sets, written as image folders the way a user's data would look.

`digits`: scikit-learn's 1,797 handwritten digits (8×8 px, 16 grey levels, 10 classes), which
ship inside scikit-learn, so the demo needs no download.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_digits(
    folder: str | Path, *, classes: list[int] | None = None, per_class: int | None = None
) -> Path:
    """Write `folder/<digit>/<n>.png` (8×8 grayscale PNGs, 0–16 scaled to 0–255).

    Args:
        classes: only these digits (default: all ten).
        per_class: at most this many images per digit, the first in scikit-learn's order.

    Returns:
        The folder. Existing files of the same names are overwritten; nothing else is touched.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = Path(folder)
    wanted = set(range(10) if classes is None else classes)
    written: dict[int, int] = {}
    for n, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        label = int(label)
        if label not in wanted or written.get(label, 0) >= (per_class or len(digits.target)):
            continue
        pixels = np.round(image * (255.0 / 16.0)).astype(np.uint8)
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").save(root / str(label) / f"{n:04d}.png")
        written[label] = written.get(label, 0) + 1
    return root
