"""The label audit (final/audit.py): flipped labels in real digits are found, the folds obey a
time budget (injected clocks: no test waits on, or asserts, wall-clock time), and the
configuration comes from the study when there is one.

The flipped-label data set is scikit-learn's digits 0, 1 and 7, 40 images each, with 4 images
moved (seeded) into another class's folder: over six flip seeds, 8 epochs on 4 folds found 3 or
4 of the 4 and never flagged anything else, so the assertions leave room for one miss."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from automl_clf.datasets import write_digits
from automl_clf.errors import SpecError
from automl_clf.final.audit import (
    PLAN_MARGIN,
    FoldRun,
    _Pace,
    assign_folds,
    audit_config,
    audit_labels,
    plan_audit,
)
from automl_clf.final.retrain import trial_config
from automl_clf.report.audit import audit_sentences
from automl_clf.search.record import TrialRecord
from automl_clf.search.study import best_trial, load_existing_study
from automl_clf.spec import load_spec
from automl_clf.spec.models import ResolvedSpec
from tests.conftest import SteppedClock, tiny_spec, write_spec

CLASSES = ["0", "1", "7"]
N_FLIPPED = 4


def flipped_digits(folder: Path, *, seed: int = 0, per_class: int = 40) -> dict[Path, str]:
    """Write digits 0, 1, 7 and move N_FLIPPED images (seeded) into another class's folder;
    returns each moved file's new path and its true class."""
    root = write_digits(folder, classes=[int(c) for c in CLASSES], per_class=per_class)
    rng = np.random.default_rng(seed)
    files = sorted(root.rglob("*.png"))
    flipped = {}
    for i in rng.choice(len(files), N_FLIPPED, replace=False):
        source = files[i]
        true = source.parent.name
        wrong = CLASSES[(CLASSES.index(true) + 1 + int(rng.integers(2))) % len(CLASSES)]
        moved = root / wrong / source.name
        shutil.move(source, moved)
        flipped[moved] = true
    return flipped


def audit_spec(root: Path, folder: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A plain CNN that learns these digits in a few epochs, one thread (fast on a busy CPU);
    `sections` override its keys, as in `tiny_spec`."""
    ours: dict[str, dict[str, Any]] = {
        "model": {"backbone": "cnn", "dropout": 0.0, "cnn": {"filters": [8], "fc_width": 16}},
        "train": {"epochs": 8, "lr": 0.01, "batch_size": 16, "threads": 1},
        "augment": {"policy": "none"},
    }
    for section, values in sections.items():
        ours[section] = {**ours.get(section, {}), **values}
    return tiny_spec(root, folder, **ours)


@pytest.fixture(scope="module")
def flipped(tmp_path_factory: pytest.TempPathFactory) -> tuple[ResolvedSpec, dict[Path, str]]:
    folder = tmp_path_factory.mktemp("flipped")
    moved = flipped_digits(folder / "data")
    spec = write_spec(folder / "spec.yaml", audit_spec(folder / "data", folder))
    return load_spec(spec), moved


def test_flipped_labels_are_found_first_with_their_true_class_suggested(
    flipped: tuple[ResolvedSpec, dict[Path, str]],
) -> None:
    spec, moved = flipped
    result = audit_labels(spec, folds=4)
    assert [fold.state for fold in result.folds] == ["done"] * 4
    assert result.n_audited == len(result.paths) == 3 * 40  # train, val and test
    found = [issue for issue in result.issues if issue.path in moved]
    assert len(found) >= N_FLIPPED - 1
    assert all(issue.path in moved for issue in result.issues[: N_FLIPPED - 1])  # the first
    assert all(issue.suggested == moved[issue.path] for issue in found)
    for issue in result.issues:
        assert issue.given == issue.path.parent.name  # the label the folder gives
        row = result.probabilities[issue.index]
        assert issue.self_confidence == pytest.approx(row[CLASSES.index(issue.given)], abs=1e-6)
    confidences = [issue.self_confidence for issue in result.issues]
    assert confidences == sorted(confidences)  # ranked, the least sure of its label first
    assert [issue.rank for issue in result.issues] == list(range(1, len(result.issues) + 1))
    assert len(result.thumbnails) == min(len(result.issues), 16)


def test_the_same_seed_gives_the_same_folds_each_holding_every_class() -> None:
    labels = np.repeat(np.arange(3), [10, 7, 5])
    folds = assign_folds(labels, 5, seed=3)
    assert np.array_equal(folds, assign_folds(labels, 5, seed=3))
    assert not np.array_equal(folds, assign_folds(labels, 5, seed=4))
    for k in range(5):
        assert set(labels[folds == k]) == {0, 1, 2}
    assert sorted(np.bincount(folds)) == [4, 4, 4, 5, 5]


class SlowAfterArming(SteppedClock):
    """Frozen until armed, then a second later at every reading: a machine that turns far
    slower than the probe measured."""

    armed = False

    def __call__(self) -> float:
        if self.armed:
            self.now += 1.0
        return self.now


def test_a_fold_that_cannot_finish_is_cut_and_the_next_is_not_started(
    flipped: tuple[ResolvedSpec, dict[Path, str]],
) -> None:
    spec, _ = flipped
    clock = SlowAfterArming()
    told: list[FoldRun] = []

    def on_fold(fold: FoldRun) -> None:
        told.append(fold)
        clock.armed = True  # after fold 1, each training step reads the clock a second later

    result = audit_labels(spec, time_s=40, folds=3, clock=clock, on_fold=on_fold)
    assert [fold.state for fold in result.folds] == ["done", "cut", "skipped"]
    assert told == result.folds
    audited = result.audited
    assert audited.sum() == result.folds[0].n_images == result.n_audited
    assert np.isnan(result.probabilities[~audited]).all()
    assert all(audited[issue.index] for issue in result.issues)  # flagged only where audited
    said = " ".join(audit_sentences(result))
    assert "Fold 2 of 3 was cut by the time budget" in said
    assert "Fold 3 of 3 was not started (no time left)" in said


def test_a_budget_too_small_for_two_folds_of_one_epoch_is_refused_saying_what_would_do(
    flipped: tuple[ResolvedSpec, dict[Path, str]],
) -> None:
    spec, _ = flipped
    with pytest.raises(SpecError, match=r"too small for the label audit.*give at least --time"):
        audit_labels(spec, time_s=0.5)


def pace(step_s: float = 0.01) -> _Pace:
    return _Pace(n_images=1000, batch_size=10, step_s=step_s)


def test_the_plan_shortens_epochs_then_drops_folds_then_epochs_again() -> None:
    def cost(folds: int, epochs: int) -> float:
        return folds * pace().fold_s(folds, epochs) * (1.0 + PLAN_MARGIN) + 1e-6

    assert plan_audit(pace(), 10, 5, cost(5, 10), 1e3) == (5, 10)
    assert plan_audit(pace(), 10, 5, cost(5, 6), 1e3) == (5, 6)
    assert plan_audit(pace(), 10, 5, cost(3, 3), 1e3) == (3, 3)  # epochs no lower than 3 first
    assert plan_audit(pace(), 10, 5, cost(2, 1), 1e3) == (2, 1)
    with pytest.raises(SpecError, match=r"a time budget of 20 s \(20% of --time\)"):
        plan_audit(pace(), 10, 5, cost(2, 1) * 0.9, 20.0, share=0.2)


def test_without_a_study_the_defaults_cross_fit_and_no_study_is_created(
    flipped: tuple[ResolvedSpec, dict[Path, str]],
) -> None:
    spec, _ = flipped
    config, epochs, source = audit_config(spec)
    assert epochs == spec.train.epochs == 8
    assert source == "the spec's defaults (no study 'tiny' yet; 8 epochs)"
    assert config.train.class_weighting == spec.final.class_weighting  # as the retrain would
    assert not Path(str(spec.study.storage).removeprefix("sqlite:///")).exists()


def test_with_a_study_its_best_trial_cross_fits_for_its_best_epoch_count(
    deadline_study: Path,
) -> None:
    spec = load_spec(deadline_study)
    study = load_existing_study(str(spec.study.storage), str(spec.study.name))
    best = best_trial(study)
    config, epochs, source = audit_config(spec)
    assert epochs == TrialRecord.of(best).best_epoch
    assert source.startswith(f"trial #{best.number}, the best of study 'tiny'")
    assert config.model == trial_config(best).model
