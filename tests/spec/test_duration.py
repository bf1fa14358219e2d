"""Durations (spec/duration.py): what people write (`90`, `15m`, `1h30m`) read as seconds,
anything else a spec error naming it, the spec field that holds one, and durations shown to
people."""

from __future__ import annotations

from pathlib import Path

import pytest

from automl_clf.errors import SpecError
from automl_clf.spec import parse_spec
from automl_clf.spec.duration import format_duration, parse_duration
from tests.conftest import tiny_spec


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1.5h", 5400),
        (" 2 m ", 120),
        (45, 45),
        (0.5, 0.5),
    ],
)
def test_durations_parse_to_seconds(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "15x", "-5", "0", "0s", "m", "1e400", True])
def test_bad_durations_are_spec_errors_naming_the_value(text: object) -> None:
    with pytest.raises(SpecError, match="duration"):
        parse_duration(text)  # type: ignore[arg-type]


def test_durations_format_for_people() -> None:
    assert format_duration(4.25) == "4.2 s"
    assert format_duration(42) == "42 s"
    assert format_duration(185) == "3 m 05 s"
    assert format_duration(3720) == "1 h 02 m"


def test_a_budget_in_the_spec_is_stored_as_seconds(tmp_path: Path, digits_root: Path) -> None:
    raw = tiny_spec(digits_root, tmp_path, study={"budget": "1h30m"})
    assert parse_spec(raw, base_dir=tmp_path).study.budget == 5400.0
    raw["study"]["budget"] = "90 minutes"
    with pytest.raises(SpecError, match=r"study\.budget: .*got '90 minutes'"):
        parse_spec(raw, base_dir=tmp_path)
