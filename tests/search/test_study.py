"""Studies (search/study.py) on real SQLite, without training: creating one (its first trials
queued once, its id), resuming it, refusing other directions, objectives, data or search space
(and `force`), reading an existing study, and which trials rank for the final model."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from automl_clf.data.dataset import Dataset, load_dataset
from automl_clf.datasets import write_digits
from automl_clf.errors import StudyError
from automl_clf.search.record import DEADLINE, StudyRecord
from automl_clf.search.study import (
    UID_ATTR,
    best_trial,
    fail_reason,
    load_existing_study,
    open_study,
    pareto_front,
    ranked_trials,
    space_lines,
    trial_value,
    trial_values,
)
from automl_clf.spec import load_spec
from automl_clf.spec.describe import grid_points
from automl_clf.spec.models import ResolvedSpec
from automl_clf.spec.warmstart import default_params
from tests.conftest import tiny_spec, write_spec

WARM = {"train.lr": 0.005, "model.cnn.filters": [8]}


def make_spec(folder: Path, root: Path, **sections: dict[str, Any]) -> ResolvedSpec:
    return load_spec(write_spec(folder / "spec.yaml", tiny_spec(root, folder, **sections)))


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory, digits_root: Path) -> Dataset:
    return load_dataset(make_spec(tmp_path_factory.mktemp("study"), digits_root).data)


def queued(study: optuna.Study) -> list[dict[str, Any]]:
    """The params of the study's queued trials, in order."""
    return [t.system_attrs["fixed_params"] for t in study.get_trials(states=(TrialState.WAITING,))]


def test_a_new_study_queues_the_defaults_then_the_warm_start_and_records_its_data(
    tmp_path: Path, digits_root: Path, digits: Dataset
) -> None:
    spec = make_spec(tmp_path, digits_root, study={"warm_start": [WARM]})
    opened = open_study(spec, digits)
    assert opened.created and not opened.space_changed and opened.n_grid_points is None
    assert (
        len(opened.uid) == 32
        and opened.uid == (opened.storage.get_study_system_attrs(opened.study_id)[UID_ATTR])
    )
    first, warm = queued(opened.study)
    assert first == default_params(spec)
    assert warm["train.lr"] == 0.005 and warm["model.cnn.filters"] == "[8]"
    record = StudyRecord.of(opened.study)
    assert record.classes == digits.classes and record.split_fingerprint == digits.fingerprint
    assert record.objective == "val_loss" and record.space == space_lines(spec)
    assert opened.study.metric_names == ["val_loss"]  # the dashboard's axis label


def test_resuming_keeps_the_study_s_id_and_queues_nothing_twice(
    tmp_path: Path, digits_root: Path, digits: Dataset
) -> None:
    spec = make_spec(tmp_path, digits_root, study={"warm_start": [WARM]})
    created = open_study(spec, digits)
    resumed = open_study(spec, digits)
    assert not resumed.created and resumed.uid == created.uid
    assert len(queued(resumed.study)) == 2


def test_a_new_study_of_the_same_name_gets_a_new_id(
    tmp_path: Path, digits_root: Path, digits: Dataset
) -> None:
    spec = make_spec(tmp_path, digits_root)
    old = open_study(spec, digits).uid
    optuna.delete_study(study_name=str(spec.study.name), storage=str(spec.study.storage))
    assert open_study(spec, digits).uid != old  # old checkpoints are never this study's


def test_a_study_whose_creation_was_cut_short_is_finished_once(
    tmp_path: Path, digits_root: Path, digits: Dataset
) -> None:
    spec = make_spec(tmp_path, digits_root, study={"warm_start": [WARM]})
    # A worker stopped midway: the study exists and the defaults are queued, nothing more.
    study = optuna.create_study(study_name=str(spec.study.name), storage=str(spec.study.storage))
    study.enqueue_trial(default_params(spec))
    opened = open_study(spec, digits)
    assert not opened.created and opened.uid
    defaults, warm = queued(opened.study)  # the defaults once, then the warm start
    assert defaults == default_params(spec) and warm["train.lr"] == 0.005


def test_a_grid_study_queues_every_point_warm_start_first(
    tmp_path: Path, digits_root: Path, digits: Dataset
) -> None:
    spec = make_spec(
        tmp_path,
        digits_root,
        study={"sampler": "grid", "warm_start": [{"model.cnn.filters": [8]}]},
        model={"dropout": {"choices": [0.0, 0.2]}},
        train={"lr": {"choices": [0.001, 0.01]}},
    )
    opened = open_study(spec, digits)
    points = queued(opened.study)
    assert opened.n_grid_points == len(points) == len(grid_points(spec)) == 16
    assert sorted(map(str, points)) == sorted(map(str, grid_points(spec)))  # each once
    n_warm = 8  # the points with [8] filters
    assert all(p["model.cnn.filters"] == "[8]" for p in points[:n_warm])
    assert all(p["model.cnn.filters"] == "[4]" for p in points[n_warm:])


def test_a_changed_space_is_refused_naming_the_change_unless_forced(
    tmp_path: Path, digits_root: Path, digits: Dataset
) -> None:
    open_study(make_spec(tmp_path, digits_root), digits)
    wider = make_spec(tmp_path, digits_root, train={"lr": {"low": 1e-4, "high": 1e-2}})
    with pytest.raises(StudyError) as refused:
        open_study(wider, digits)
    message = str(refused.value)
    assert "search space of study 'tiny' changed" in message
    assert "  - train.lr float [0.001, 0.01, log]" in message
    assert "  + train.lr float [0.0001, 0.01]" in message and "--force" in message
    forced = open_study(wider, digits, force=True)
    assert forced.space_changed
    assert StudyRecord.of(forced.study).space == space_lines(wider)
    assert not open_study(wider, digits).space_changed  # the new space is the study's now


def test_another_objective_of_the_same_direction_is_refused(
    tmp_path: Path, digits_root: Path, digits: Dataset
) -> None:
    open_study(make_spec(tmp_path, digits_root, study={"objective": "accuracy"}), digits)
    other = make_spec(tmp_path, digits_root, study={"objective": "macro_f1"})
    with pytest.raises(StudyError, match="optimises 'accuracy', the spec asks for 'macro_f1'"):
        open_study(other, digits)


def test_another_direction_is_refused_with_the_way_out(
    tmp_path: Path, digits_root: Path, digits: Dataset
) -> None:
    open_study(make_spec(tmp_path, digits_root), digits)
    maximise = make_spec(tmp_path, digits_root, study={"objective": "accuracy"})
    with pytest.raises(StudyError) as refused:
        open_study(maximise, digits)
    assert "cannot change a study's directions" in str(refused.value)
    assert "--study-name" in str(refused.value)


def test_other_data_is_refused(tmp_path: Path, digits_root: Path, digits: Dataset) -> None:
    spec = make_spec(tmp_path, digits_root)
    open_study(spec, digits)
    other = load_dataset(
        make_spec(tmp_path, write_digits(tmp_path / "other", classes=[2, 3], per_class=20)).data
    )
    with pytest.raises(StudyError, match="differs from the data study 'tiny' was made with"):
        open_study(spec, other)


def test_reading_a_study_that_is_not_there_creates_nothing_and_lists_what_is(
    tmp_path: Path, digits_root: Path, digits: Dataset
) -> None:
    missing = tmp_path / "none" / "x.db"
    with pytest.raises(StudyError, match="does not exist yet"):
        load_existing_study(f"sqlite:///{missing}", "tiny")
    assert not missing.parent.exists()
    spec = make_spec(tmp_path, digits_root)
    open_study(spec, digits)
    with pytest.raises(StudyError, match=r"no study named 'tyni' .*studies there: tiny"):
        load_existing_study(str(spec.study.storage), "tyni")
    assert load_existing_study(str(spec.study.storage), "tiny").study_name == "tiny"


def _add(study: optuna.Study, state: TrialState, value: float | None = None, **attrs: Any) -> int:
    trial = optuna.trial.create_trial(
        state=state,
        value=value,
        params={"x": 0.0},
        distributions={"x": optuna.distributions.FloatDistribution(0.0, 1.0)},
        intermediate_values={1: 0.9},
        user_attrs=attrs,
    )
    study.add_trial(trial)
    return len(study.trials) - 1


def test_the_ranking_counts_complete_and_cut_trials_within_the_constraints() -> None:
    study = optuna.create_study()
    worse = _add(study, TrialState.COMPLETE, 0.5)
    better = _add(study, TrialState.COMPLETE, 0.3)
    # Cut by the deadline: Optuna holds it PRUNED; its best epoch (0.2) ranks it.
    cut = _add(study, TrialState.PRUNED, stopped_by=DEADLINE, objective_value=0.2)
    _add(study, TrialState.PRUNED)  # by the pruner: never a candidate
    _add(study, TrialState.COMPLETE, 0.1, feasible=False)  # best value, but infeasible
    _add(study, TrialState.FAIL)
    assert [t.number for t in ranked_trials(study)] == [cut, better, worse]
    assert best_trial(study).number == cut
    trials = study.trials
    assert trial_value(trials[cut]) == 0.2 and trial_values(trials[cut]) == [0.2]
    assert trial_value(trials[better]) == 0.3
    assert math.isnan(trial_value(trials[3]))  # pruned: no value of its own


def test_a_maximised_objective_ranks_the_highest_first() -> None:
    study = optuna.create_study(direction="maximize")
    low, high = _add(study, TrialState.COMPLETE, 0.5), _add(study, TrialState.COMPLETE, 0.9)
    assert [t.number for t in ranked_trials(study)] == [high, low]


def test_no_usable_trial_says_which_and_how_many_the_study_holds() -> None:
    study = optuna.create_study(study_name="s")
    _add(study, TrialState.PRUNED)
    with pytest.raises(StudyError, match=r"no usable trial \(complete or cut .*1 pruned"):
        best_trial(study)
    _add(study, TrialState.COMPLETE, 0.1, feasible=False)
    with pytest.raises(StudyError, match=r"within study\.constraints"):
        best_trial(study)


def test_a_multi_objective_study_has_a_pareto_front_not_a_best_trial() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"], study_name="m")
    for values in ([0.9, 100.0], [0.8, 10.0], [0.7, 50.0]):  # the last is dominated
        study.add_trial(optuna.trial.create_trial(values=values))
    assert [t.number for t in pareto_front(study)] == [0, 1]
    with pytest.raises(StudyError, match=r"Pareto front \(#0, #1\) with --trial N"):
        best_trial(study)


def test_a_failed_trial_says_why_or_that_its_worker_was_lost() -> None:
    study = optuna.create_study()
    said = _add(study, TrialState.FAIL, fail_reason="ValueError: bad")
    lost = _add(study, TrialState.FAIL)
    assert fail_reason(study.trials[said]) == "ValueError: bad"
    assert "worker lost" in fail_reason(study.trials[lost])
