"""The trial record: the user attributes a trial stores, written and read through one model."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from pydantic import ValidationError

from automl_clf.search import run_search
from automl_clf.search.record import (
    CUT_AT_DEADLINE,
    STATES,
    TRACEBACK_CHARS,
    StudyRecord,
    TrialRecord,
    count_states,
    counts_text,
    n_usable,
    short_traceback,
    state_name,
    trial_state,
)
from automl_clf.spec import load_spec
from tests.conftest import tiny_spec, write_spec


def _running_trial() -> tuple[optuna.Study, optuna.Trial]:
    study = optuna.create_study()
    return study, study.ask()


def test_every_attribute_a_search_stores_is_a_field_and_reads_back_as_stored(
    tmp_path: Path, digits_root: Path
) -> None:
    spec = tiny_spec(
        digits_root,
        tmp_path,
        study={"n_trials": 2, "pruner": "none", "constraints": {"max_params": 10**9}},
    )
    study = run_search(load_spec(write_spec(tmp_path / "spec.yaml", spec))).study
    assert set(study.user_attrs) <= set(StudyRecord.model_fields)
    assert StudyRecord.of(study).attrs() == study.user_attrs
    for trial in study.trials:
        assert set(trial.user_attrs) <= set(TrialRecord.model_fields)
        # the keys and the values' formats are the stored ones: existing studies read the same
        assert TrialRecord.of(trial).attrs() == trial.user_attrs
        record = TrialRecord.of(trial)
        assert record.val_loss == trial.value and record.feasible is True
        assert record.weights is not None and record.weights["file"].endswith(".safetensors")


def test_saving_writes_only_the_fields_given() -> None:
    study, trial = _running_trial()
    TrialRecord(fail_reason="interrupted").save(trial)
    TrialRecord(cut_short=True, retry_of=0).save(trial)
    assert study.trials[0].user_attrs == {
        "fail_reason": "interrupted",
        "cut_short": True,
        "retry_of": 0,
    }


def test_an_unknown_field_or_a_value_of_the_wrong_type_is_refused_when_writing() -> None:
    with pytest.raises(ValidationError, match="val_los"):
        TrialRecord(val_los=0.5)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="best_epoch"):
        TrialRecord(best_epoch="the third")  # type: ignore[arg-type]


def test_reading_leaves_out_what_it_cannot_read_and_what_is_not_the_records() -> None:
    record = TrialRecord.from_attrs(
        {"val_loss": 0.25, "best_epoch": "the third", "note_from_a_user": 1}
    )
    assert record.val_loss == 0.25
    assert record.best_epoch is None
    assert record.attrs() == {"val_loss": 0.25}


def test_an_absent_attribute_reads_as_what_its_absence_meant() -> None:
    record = TrialRecord.from_attrs({})
    assert record.feasible is True  # no constraints: feasible
    assert record.infeasible is False and record.cut_short is False
    assert record.fail_reason is None and record.config is None
    assert record.attrs() == {}


@pytest.mark.parametrize(
    ("attrs", "retried"),
    [
        ({"fail_reason": "interrupted"}, True),
        ({"fail_reason": "timeout"}, True),
        ({"fail_reason": "FatalError: …", "cut_short": True}, True),
        ({"fail_reason": "TrialFailed: loss became nan"}, False),
        ({}, False),
    ],
)
def test_a_trial_is_retried_first_when_it_failed_through_no_fault_of_its_own(
    attrs: dict[str, object], retried: bool
) -> None:
    assert TrialRecord.from_attrs(attrs).retried_first is retried


DEADLINE_CUT = {"stopped_by": "deadline", "objective_value": 0.5}  # as the objective writes it
TrialState = optuna.trial.TrialState


@pytest.mark.parametrize(
    ("state", "values", "attrs", "expected"),
    [
        (TrialState.COMPLETE, [0.5], {}, "complete"),
        (TrialState.PRUNED, None, {}, "pruned"),  # the pruner stopped it
        (TrialState.PRUNED, None, DEADLINE_CUT, CUT_AT_DEADLINE),  # one objective
        (TrialState.COMPLETE, [0.5, 3.0], {"stopped_by": "deadline"}, CUT_AT_DEADLINE),  # several
        (TrialState.FAIL, None, {"fail_reason": "timeout"}, "fail"),
        (TrialState.RUNNING, None, {}, "running"),
        (TrialState.WAITING, None, {}, "waiting"),
    ],
)
def test_a_trial_the_deadline_cut_is_named_so_whatever_optuna_holds_it_as(
    state: TrialState, values: list[float] | None, attrs: dict[str, object], expected: str
) -> None:
    directions = ["minimize"] * (len(values) if values else 1)
    study = optuna.create_study(directions=directions)
    study.add_trial(optuna.trial.create_trial(state=state, values=values, user_attrs=attrs))
    (trial,) = study.trials  # as stored and read back
    assert trial_state(trial) == expected
    assert state_name(trial) == STATES[expected]


def test_counts_list_every_state_and_usable_ones_are_complete_or_cut() -> None:
    study = optuna.create_study()
    for state, attrs in [
        (TrialState.COMPLETE, {}),
        (TrialState.PRUNED, DEADLINE_CUT),
        (TrialState.PRUNED, DEADLINE_CUT),
        (TrialState.PRUNED, {}),
        (TrialState.FAIL, {}),
    ]:
        value = 0.5 if state == TrialState.COMPLETE else None
        study.add_trial(optuna.trial.create_trial(state=state, value=value, user_attrs=attrs))
    counts = count_states(study.trials)
    assert list(counts) == list(STATES)
    assert counts == {
        "complete": 1,
        CUT_AT_DEADLINE: 2,
        "pruned": 1,
        "fail": 1,
        "running": 0,
        "waiting": 0,
    }
    assert n_usable(counts) == 3
    assert counts_text(counts) == "1 complete, 2 cut at the deadline, 1 pruned, 1 failed"
    assert counts_text(count_states([])) == "no trials"


def _raise_nested(depth: int, message: str) -> None:
    if depth == 0:
        raise ValueError(message)
    _raise_nested(depth - 1, message)


def test_a_short_traceback_is_whole_when_it_fits() -> None:
    try:
        _raise_nested(3, "shapes cannot be multiplied")
    except ValueError as exc:
        text = short_traceback(exc)
    assert text.startswith("Traceback (most recent call last)")
    assert text.endswith("ValueError: shapes cannot be multiplied\n")
    assert text.count("in _raise_nested") == 4  # every frame


def test_a_long_traceback_keeps_its_end_where_the_error_is() -> None:
    try:
        try:
            _raise_nested(1, "a long cause " * 500)
        except ValueError as cause:
            raise RuntimeError("the innermost message") from cause
    except RuntimeError as exc:
        text = short_traceback(exc)
    head, rest = text.split("\n", 1)
    assert head.startswith("… (") and head.endswith(" characters cut)")
    assert len(rest) == TRACEBACK_CHARS
    assert rest.endswith("RuntimeError: the innermost message\n")
