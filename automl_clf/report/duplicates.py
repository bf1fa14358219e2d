"""The report's near-duplicates section: how many clusters of look-alike images the data set
holds, which of them straddled train/val/test, what `data.near_duplicates` did about it, and
thumbnails of a few clusters (those that straddled first).

The figure is capped (`MAX_CLUSTERS` rows of at most `MAX_FILES` thumbnails, each decoded at
`THUMBNAIL_PX`) so a data set with thousands of clusters still gives a report that opens at
once; the table beside it names the files of the same clusters, and `autoclf validate` lists
them all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from automl_clf.data.dataset import Dataset
from automl_clf.data.near_duplicates import Cluster, shown_path
from automl_clf.data.preprocess import Decoding
from automl_clf.errors import ImageError
from automl_clf.report.content import NearDuplicateSummary, ReportContent, ShownCluster
from automl_clf.report.plots import draw_image_grid
from automl_clf.report.tables import Table

MAX_CLUSTERS = 6  # clusters shown
MAX_FILES = 5  # thumbnails of each
THUMBNAIL_PX = 48  # decoded at this side, letterboxed: a crop or another aspect stays visible


def summarise_near_duplicates(dataset: Dataset) -> NearDuplicateSummary | None:
    """The report's summary of `dataset.near_duplicates` (None when it was not looked for),
    with thumbnails of the clusters shown."""
    near = dataset.near_duplicates
    if near is None:
        return None
    ordered = sorted(near.clusters, key=lambda c: not c.straddles)[:MAX_CLUSTERS]
    decoding = Decoding(
        image_size=THUMBNAIL_PX, channels=dataset.spec.channels, resize="letterbox"
    )
    return NearDuplicateSummary(
        mode=near.mode,
        n_clusters=len(near.clusters),
        n_files=near.n_files,
        n_straddled=len(near.straddling),
        n_leaks=len(near.leaks()),
        n_moved=near.n_moved,
        movable=near.movable,
        summary=near.summary(),
        shown=[_shown(cluster, dataset.root, decoding) for cluster in ordered],
    )


def _shown(cluster: Cluster, root: Path, decoding: Decoding) -> ShownCluster:
    files = cluster.files[:MAX_FILES]
    images: list[np.ndarray | None] = []
    for path in files:
        try:
            pixels = decoding.load_file(path)
        except ImageError:
            images.append(None)
            continue
        images.append(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    return ShownCluster(
        files=[shown_path(p, root) for p in files],
        splits=list(cluster.splits[:MAX_FILES]),
        straddled=cluster.straddles,
        n_files=len(cluster.files),
        images=images,
    )


def sentences(content: ReportContent) -> list[str]:
    """What the section says, the same words in report.md and index.html."""
    near = content.near_duplicates
    if near is None:
        return ["Near-duplicates were not looked for (data.near_duplicates: off)."]
    if not near.n_clusters:
        return [
            "No near-duplicate images: no two files look alike (perceptual hash of the whole "
            "image and of its crops, confirmed on the pixels)."
        ]
    out = [
        f"{near.n_clusters} cluster(s) of near-duplicate images ({near.n_files} images): "
        f"{near.n_straddled} straddled train/val/test ({near.n_leaks} pair(s) across splits)."
    ]
    if near.summary:
        out.append(near.summary[0].upper() + near.summary[1:] + ".")
    if near.n_clusters > len(near.shown):
        out.append(
            f"Shown: {len(near.shown)} of them, those that straddled first; "
            "`autoclf validate` lists every one."
        )
    return out


def clusters_table(content: ReportContent) -> Table:
    """One row per cluster shown: its files, each with the split it was in."""
    near = content.near_duplicates
    rows = []
    for i, cluster in enumerate(near.shown if near is not None else [], start=1):
        files = "; ".join(
            f"{split or 'dropped'}: {name}"
            for name, split in zip(cluster.files, cluster.splits, strict=True)
        )
        more = cluster.n_files - len(cluster.files)
        files += f"; and {more} more" if more else ""
        rows.append([str(i), "yes" if cluster.straddled else "no", files])
    return Table(["cluster", "straddled splits", "files (split before any move)"], rows)


def draw_near_duplicates(near: NearDuplicateSummary) -> Figure:
    """One row of thumbnails per cluster shown, each captioned with its split and name."""
    columns = max(len(c.images) for c in near.shown)
    images: list[np.ndarray | None] = []
    captions: list[str] = []
    for i, cluster in enumerate(near.shown, start=1):
        gap = columns - len(cluster.images)
        images += [*cluster.images, *[None] * gap]
        captions += [
            f"#{i} {split or 'dropped'}: {Path(name).name}"
            for name, split in zip(cluster.files, cluster.splits, strict=True)
        ] + [""] * gap
    return draw_image_grid(
        images,
        captions,
        title="Near-duplicate clusters, one a row (split before any move)",
        columns=columns,
    )
