"""final/folder.py: an export is readable by others, as any file the user writes, whatever mode
its writers chose (safetensors and `tempfile` write 0600); it is never written through a link."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from safetensors.torch import save_file
from typer.testing import CliRunner

from automl_clf.cli import app
from automl_clf.errors import ExportError
from automl_clf.final.folder import check_replaceable, staged_export
from tests.conftest import Exported

runner = CliRunner()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_an_export_s_files_are_0644_and_its_folders_0755(exported: Exported) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    for path in [exported.folder, *exported.folder.rglob("*")]:
        expected = (0o777 if path.is_dir() else 0o666) & ~mask
        assert _mode(path) == expected, f"{path}: {oct(_mode(path))}"


def test_files_written_0600_are_shared_as_the_umask_says(tmp_path: Path, umask_022: None) -> None:
    import torch

    out = tmp_path / "model"
    with staged_export(out) as staging:
        save_file({"w": torch.zeros(2)}, str(staging / "model.safetensors"))
        (staging / "report").mkdir(mode=0o700)
        secret = staging / "report" / "metrics.json"
        secret.write_text("{}")
        secret.chmod(0o600)
    assert _mode(out) == 0o755 and _mode(out / "report") == 0o755
    assert _mode(out / "model.safetensors") == 0o644
    assert _mode(out / "report" / "metrics.json") == 0o644
    check_replaceable(out)  # the marker was written after the modes changed: still an export


def test_a_stricter_umask_is_honoured(tmp_path: Path) -> None:
    previous = os.umask(0o077)
    try:
        with staged_export(tmp_path / "model") as staging:
            (staging / "model.json").write_text("{}")
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "model" / "model.json") == 0o600


def test_an_export_folder_given_as_a_link_is_refused_not_written_through(
    tmp_path: Path, exported: Exported
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    refused = r"link \(to .*target\): an export is never written"
    with pytest.raises(ExportError, match=refused), staged_export(link) as staging:
        (staging / "model.json").write_text("{}")
    result = runner.invoke(app, ["best", str(exported.spec), "--export", str(link)])
    assert result.exit_code == 2, result.output
    assert "is a link" in result.output and "never written through a link" in result.output
    assert link.is_symlink() and list(target.iterdir()) == []  # refused before the retrain
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "target"]  # no staging left


def test_links_above_the_export_folder_are_followed(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "parent").symlink_to(tmp_path / "real", target_is_directory=True)
    with staged_export(tmp_path / "parent" / "model") as staging:
        (staging / "model.json").write_text("{}")
    assert (tmp_path / "real" / "model" / "model.json").is_file()
    check_replaceable(tmp_path / "parent" / "model")
