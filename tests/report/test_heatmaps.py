"""`autoclf predict --explain OUT_DIR` (report/heatmaps.py): one heatmap PNG per readable image,
named after it, inside OUT_DIR and nowhere else, beside the usual predictions."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from automl_clf.cli import app
from automl_clf.final.folder import check_replaceable
from automl_clf.report.heatmaps import INDEX_FILE, MIN_SIDE_PX, heatmap_names
from tests.conftest import Exported

runner = CliRunner()


def _test_images(exported: Exported, n: int) -> list[Path]:
    with (exported.folder / "report" / "test_predictions.csv").open() as handle:
        return [Path(row["path"]) for row in list(csv.DictReader(handle))[:n]]


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


def test_names_are_safe_distinct_and_stay_in_the_folder() -> None:
    names = heatmap_names(
        [
            Path("../../etc/passwd"),
            Path(".."),
            Path("a/b/cat.jpg"),
            Path("c/cat.png"),
            Path("C/CAT.png"),  # a case-insensitive file system must not merge them
            Path("x/heatmaps.csv"),
            Path("we ird$name;rm.png"),
        ]
    )
    assert names == [
        "passwd.png",
        "__.png",  # ".." keeps no dot: it cannot name the parent
        "cat.png",
        "cat-2.png",
        "CAT-3.png",
        "heatmaps.png",
        "we_ird_name_rm.png",
    ]
    assert all("/" not in n and "\\" not in n and not n.startswith(".") for n in names)


def test_predict_explain_writes_one_png_per_image_inside_the_folder(
    exported: Exported, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    sources = _test_images(exported, 3)
    shutil.copy(sources[0], inbox / "a.png")
    shutil.copy(sources[1], inbox / "sub" / "a.png")  # the same name in another folder
    shutil.copy(sources[2], inbox / "b..png")
    (inbox / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"mine")
    out.mkdir()
    (out / "a.png").symlink_to(outside)  # planted: writing a.png must not write through it
    before = _files_under(tmp_path)
    escaped = inbox / "sub" / ".." / "sub" / "a.png"  # `..` in the path given
    result = runner.invoke(
        app, ["predict", str(exported.folder), str(inbox), str(escaped), "--explain", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))  # the usual predictions
    assert len(rows) == 5 and sum(1 for r in rows if r["error"]) == 1
    assert outside.read_bytes() == b"mine" and not (out / "a.png").is_symlink()
    new = _files_under(tmp_path) - before
    assert all(path.parent == out for path in new), new  # nothing outside OUT_DIR
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["a-2.png", "a-3.png", "a.png", "b_.png"]  # 4 readable images, 4 PNGs
    with (out / INDEX_FILE).open() as handle:
        index = list(csv.DictReader(handle))
    assert sorted(r["heatmap"] for r in index) == pngs
    predicted = {r["path"]: r["predicted"] for r in rows if not r["error"]}
    assert {r["image"]: r["class"] for r in index} == predicted  # the predicted class, explained
    for name in pngs:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.mode == "RGB"
            assert min(image.size) >= MIN_SIDE_PX
            assert np.asarray(image).std() > 0  # an image under a heatmap, not a flat fill
    assert "wrote 4 heatmap(s)" in result.stderr


def test_predict_explain_refuses_a_folder_inside_the_export(
    exported: Exported, tmp_path: Path
) -> None:
    image = _test_images(exported, 1)[0]
    for inside in (exported.folder, exported.folder / "report" / "heatmaps"):
        result = runner.invoke(
            app, ["predict", str(exported.folder), str(image), "--explain", str(inside)]
        )
        assert result.exit_code == 2
        assert "inside the export folder" in result.output
    check_replaceable(exported.folder)  # still exactly what the export wrote
