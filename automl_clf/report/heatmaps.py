"""`autoclf predict --explain OUT_DIR`: where the model looked in each image, as PNGs.

OUT_DIR/<image name>.png   the image as the model saw it (decoded to the export's size) under
                           its Grad-CAM heatmap for the predicted class (final/explain.py),
                           enlarged pixel for pixel to at least MIN_SIDE_PX
OUT_DIR/heatmaps.csv       which image each PNG shows, and the class it explains

A PNG is named after its image's stem with anything but letters, digits, - and _ replaced, so a
name such as `..` cannot leave OUT_DIR; two images with one stem get `-2`, `-3`, … OUT_DIR must
not be inside the export folder, which stays exactly what the export wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from automl_clf.errors import ExplainUnavailable
from automl_clf.final.explain import BATCH_SIZE
from automl_clf.final.predictor import Predictor
from automl_clf.outputs import csv_writer, safe_name
from automl_clf.report.plots import overlay_heatmap

MIN_SIDE_PX = 128  # a heatmap PNG is enlarged by a whole factor to at least this side
MAX_STEM = 100  # characters of the image's stem kept in its PNG's name
INDEX_FILE = "heatmaps.csv"


@dataclass(frozen=True)
class HeatmapFiles:
    files: list[Path]  # one PNG per image explained, in the order given
    notes: list[str]  # why there are none, or which ensemble members were left out


def heatmap_names(images: Sequence[Path]) -> list[str]:
    """A distinct, safe PNG name per image (the module docstring)."""
    names: list[str] = []
    taken: set[str] = set()
    for image in images:
        stem = safe_name(image.stem)[:MAX_STEM] or "image"
        name, n = f"{stem}.png", 1
        while name.lower() in taken or name == INDEX_FILE:  # case-insensitive file systems too
            n += 1
            name = f"{stem}-{n}.png"
        taken.add(name.lower())
        names.append(name)
    return names


def write_heatmaps(predictor: Predictor, images: Sequence[Path], out_dir: Path) -> HeatmapFiles:
    """Write each image's heatmap PNG and the index into `out_dir` (the module docstring).
    `images` must be readable (those `predict` read); BATCH_SIZE are explained at a time.
    A model that cannot be explained writes nothing and says why in `notes`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = heatmap_names(images)
    classes = predictor.classes_
    written: list[Path] = []
    rows: list[tuple[str, str, str]] = []
    notes: list[str] = []
    for start in range(0, len(images), BATCH_SIZE):
        batch = images[start : start + BATCH_SIZE]
        pixels = np.stack([predictor.load(image) for image in batch])
        try:
            explanation = predictor.explain_pixels(pixels)
        except ExplainUnavailable as exc:
            return HeatmapFiles([], [f"no heatmaps: {exc}"])
        notes = explanation.notes
        for k, (image, heatmap) in enumerate(zip(batch, explanation.maps, strict=True)):
            path = out_dir / names[start + k]
            _save_png(overlay_heatmap(pixels[k], heatmap), path)
            written.append(path)
            rows.append((str(image), path.name, classes[int(explanation.classes[k])]))
    index = out_dir / INDEX_FILE
    index.unlink(missing_ok=True)  # a link planted there must not be written through
    with index.open("w", newline="") as handle:
        writer = csv_writer(handle)
        writer.writerow(["image", "heatmap", "class"])
        writer.writerows(rows)
    return HeatmapFiles(written, notes)


def _save_png(rgb: np.ndarray, path: Path) -> None:
    """`rgb` enlarged pixel for pixel to at least MIN_SIDE_PX, written as a PNG at `path` (a
    link already there is replaced, not followed)."""
    height, width = rgb.shape[:2]
    scale = max(1, -(-MIN_SIDE_PX // max(height, width)))
    image = Image.fromarray(rgb)
    if scale > 1:
        image = image.resize((width * scale, height * scale), Image.Resampling.NEAREST)
    path.unlink(missing_ok=True)
    image.save(path, format="PNG")
