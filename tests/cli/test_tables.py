"""The summary lines and tables the CLI prints (automl_clf/cli/tables.py), on a real final
result and on a real study a time budget cut."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState, create_trial
from rich.console import Console

import automl_clf
from automl_clf.cli.tables import best_line, final_summary, status_tables, study_counts
from automl_clf.errors import StudyError
from automl_clf.final.retrain import retrain
from automl_clf.search.study import best_trial
from tests.conftest import Ensembled, write_spec


def test_an_ensemble_partly_retrained_says_which_members_were(
    ensembled: Ensembled, tmp_path: Path
) -> None:
    """`final.retrain: auto` under a budget retrains the best members that fit; the summary
    names them, not 'each retrained'."""
    raw = yaml.safe_load(ensembled.spec.read_text())
    raw["final"] = {"ensemble": 2, "retrain": "auto"}
    spec = automl_clf.load_spec(write_spec(ensembled.spec.with_name("partly.yaml"), raw))
    study = optuna.load_study(study_name=spec.study.name, storage=spec.study.storage)
    final = retrain(spec, study, retrain_members=1)
    assert [m.retrained for m in final.members] == [True, False]
    line = " ".join(final_summary(final).split())
    assert "the best 1 retrained on train+val, the rest as searched" in line
    assert "each retrained" not in line


def _copy(spec_path: Path) -> optuna.Study:
    """The study of `spec_path`'s spec, copied into memory, to add trials to."""
    spec = automl_clf.load_spec(spec_path)
    stored = optuna.load_study(study_name=spec.study.name, storage=spec.study.storage)
    study = optuna.create_study(study_name=spec.study.name)
    study.add_trials(stored.trials)
    return study


def _text(table: object) -> str:
    console = Console(record=True, width=200, color_system=None)
    console.print(table)
    return " ".join(console.export_text().split())


def test_status_counts_complete_and_cut_trials_as_usable_results(deadline_study: Path) -> None:
    study = _copy(deadline_study)
    cut_value = study.trials[0].user_attrs["objective_value"]
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=cut_value + 1.0))  # worse
    by_state = status_tables(study)[0]
    assert "3 trials, 2 usable (complete or cut at the deadline)" in _text(by_state)
    assert study_counts(study) == "1 complete, 1 cut at the deadline, 1 pruned"
    assert best_line(study, ("val_loss",)).startswith("best trial #0 (cut at the deadline): ")

    study.add_trial(create_trial(state=TrialState.COMPLETE, value=cut_value - 1.0))  # better
    assert best_line(study, ("val_loss",)) == f"best trial #3: val_loss {cut_value - 1.0:.4g}"


def test_without_a_complete_or_cut_trial_status_and_best_say_there_is_none() -> None:
    study = optuna.create_study(study_name="tiny")
    study.add_trial(create_trial(state=TrialState.PRUNED, intermediate_values={1: 0.3}))
    study.add_trial(create_trial(state=TrialState.FAIL))
    assert "2 trials, 0 usable" in _text(status_tables(study)[0])
    assert best_line(study, ("val_loss",)).startswith("no usable trial yet")
    with pytest.raises(StudyError, match=r"no usable trial .* yet \(1 pruned, 1 failed\)"):
        best_trial(study)
