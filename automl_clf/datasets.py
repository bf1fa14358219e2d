"""Bundled real data sets, written as image folders the way a user's data would look.

`digits`: scikit-learn's 1,797 handwritten digits (8×8 px, 16 grey levels, 10 classes), which
ship inside scikit-learn, so the demo needs no download.

`near_copy`: a near-duplicate of an image, made the four ways real data sets get them (resized,
re-encoded as JPEG, cropped by 5-10%, brightened or darkened): what the near-duplicate check
(data/near_duplicates.py) is measured and tested with, and a bench can inject.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageEnhance

CopyKind = Literal["resize", "jpeg", "crop", "brightness"]
COPY_KINDS: tuple[CopyKind, ...] = ("resize", "jpeg", "crop", "brightness")


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


def near_copy(image: Image.Image, kind: CopyKind, rng: np.random.Generator) -> Image.Image:
    """A near-duplicate of `image`, drawn with `rng`:

    - resize: ×0.5-1.5 a side (×2-4 for an image under 32 px, which cannot shrink);
    - jpeg: re-encoded at quality 60-90;
    - crop: 5-10% of each side cut off in all, at a random position (an image under 32 px is
      first enlarged to 32: a crop of an 8 px digit would be under a pixel);
    - brightness: ×0.8-1.2 (Pillow's ImageEnhance.Brightness).
    """
    if kind == "resize":
        factor = rng.uniform(2.0, 4.0) if min(image.size) < 32 else rng.uniform(0.5, 1.5)
        size = (max(8, round(image.width * factor)), max(8, round(image.height * factor)))
        return image.resize(size, Image.Resampling.BICUBIC)
    if kind == "jpeg":
        buffer = io.BytesIO()
        image.convert("L" if image.mode == "L" else "RGB").save(
            buffer, "JPEG", quality=int(rng.integers(60, 91))
        )
        buffer.seek(0)
        with Image.open(buffer) as reread:
            return reread.copy()
    if kind == "crop":
        if min(image.size) < 32:
            image = image.resize((32, 32), Image.Resampling.BICUBIC)
        share = rng.uniform(0.05, 0.10)
        w, h = image.size
        cut_x, cut_y = round(w * share), round(h * share)
        x, y = int(rng.integers(0, cut_x + 1)), int(rng.integers(0, cut_y + 1))
        return image.crop((x, y, w - (cut_x - x), h - (cut_y - y)))
    if kind == "brightness":
        return ImageEnhance.Brightness(image).enhance(rng.uniform(0.8, 1.2))
    raise ValueError(f"unknown copy kind {kind!r}; use one of {', '.join(COPY_KINDS)}")
