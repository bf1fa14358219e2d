"""The bundled digits data set is written as a real image folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from automl_clf.cli import app


def test_digits_are_written_as_ten_class_folders_of_pngs(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["datasets", "digits", str(tmp_path / "digits")])
    assert result.exit_code == 0, result.output
    folders = sorted(p.name for p in (tmp_path / "digits").iterdir())
    assert folders == [str(d) for d in range(10)]
    files = list((tmp_path / "digits").rglob("*.png"))
    assert len(files) == 1797
    image = Image.open(files[0])
    assert image.size == (8, 8) and image.mode == "L"
    assert np.asarray(image).max() > 200  # 0–16 levels scaled to the full 0–255 range
