"""train/weights.py: a kept weights file is found where its study moved, and only if unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from automl_clf.train.weights import load_weights, relocated, save_weights, weights_problem


def kept(root: Path) -> dict[str, str]:
    """A trial's best-epoch weights as the search keeps them: <artifacts>/trial_0003/best…"""
    return save_weights(torch.nn.Linear(2, 2), root / "trial_0003" / "best.safetensors")


def test_weights_are_found_where_the_study_moved(tmp_path: Path) -> None:
    record = kept(tmp_path / "old")
    shutil.move(tmp_path / "old", tmp_path / "new")
    assert "are gone" in str(weights_problem(record))
    moved = relocated(record, tmp_path / "new")
    assert moved == {**record, "file": str(tmp_path / "new" / "trial_0003" / "best.safetensors")}
    assert weights_problem(moved) is None
    load_weights(torch.nn.Linear(2, 2), moved)


def test_weights_where_they_were_recorded_are_left_as_recorded(tmp_path: Path) -> None:
    record = kept(tmp_path / "old")
    shutil.copytree(tmp_path / "old", tmp_path / "copy")
    assert relocated(record, tmp_path / "copy") == record


def test_moved_weights_that_changed_are_not_used(tmp_path: Path) -> None:
    record = kept(tmp_path / "old")
    shutil.move(tmp_path / "old", tmp_path / "new")
    save_weights(torch.nn.Linear(2, 2), tmp_path / "new" / "trial_0003" / "best.safetensors")
    assert "another sha256" in str(weights_problem(relocated(record, tmp_path / "new")))


def test_what_is_no_record_or_nowhere_stays_as_it_is(tmp_path: Path) -> None:
    record = kept(tmp_path / "old")
    shutil.rmtree(tmp_path / "old")
    assert relocated(record, tmp_path / "elsewhere") == record
    assert relocated(None, tmp_path) is None
    assert relocated({"file": 3}, tmp_path) == {"file": 3}
