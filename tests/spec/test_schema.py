"""The published schema: every field described, readable `$defs` names, references that
resolve, durations accepted as the loader reads them, and docs/spec-reference.md rendered from
the current code."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from automl_clf.cli import app
from automl_clf.errors import SpecError
from automl_clf.spec.duration import DURATION_PATTERN, parse_duration
from automl_clf.spec.reference import spec_reference_markdown
from automl_clf.spec.schema import REFERENCE_PAGE, spec_json_schema
from tests.conftest import REPO

runner = CliRunner()


def properties(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(model.field, its schema) for every field of the spec and of every model it holds."""
    for name, prop in schema["properties"].items():
        yield f"Spec.{name}", prop
    for model, body in schema["$defs"].items():
        for name, prop in body.get("properties", {}).items():
            yield f"{model}.{name}", prop


def test_every_field_is_described() -> None:
    undescribed = [
        name for name, prop in properties(spec_json_schema()) if not prop.get("description")
    ]
    assert undescribed == []


def test_defs_have_readable_names_and_every_ref_resolves() -> None:
    schema = spec_json_schema()
    for name in schema["$defs"]:
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name), name
        assert "Annotated" not in name and "FieldInfo" not in name and len(name) < 80, name
    refs = re.findall(r'"\$ref": "#/\$defs/([^"]+)"', json.dumps(schema))
    assert refs and set(refs) <= set(schema["$defs"])
    assert "Choice_float_ge_0_lt_1" in schema["$defs"]  # dropout's choices: [0, 1)
    assert "FloatRange_float_ge_0_le_1" in schema["$defs"]  # mixup's range: [0, 1]


@pytest.mark.parametrize("text", ["15m", "90s", "2h", "1h30m", "1.5h", "90", " 2 h ", "3D"])
def test_the_budget_schema_accepts_what_the_loader_reads(text: str) -> None:
    assert re.fullmatch(DURATION_PATTERN, text) and parse_duration(text) > 0


@pytest.mark.parametrize("text", ["15 minutes", "soon", "m15", ""])
def test_the_budget_schema_refuses_what_the_loader_refuses(text: str) -> None:
    assert not re.fullmatch(DURATION_PATTERN, text)
    with pytest.raises(SpecError):
        parse_duration(text)


def test_the_budget_field_takes_seconds_or_a_duration() -> None:
    budget = spec_json_schema()["$defs"]["StudySpec"]["properties"]["budget"]
    kinds = {alt.get("type") for alt in budget["anyOf"]}
    assert {"number", "string", "null"} <= kinds


def test_schema_prints_the_json_schema_and_the_reference_page() -> None:
    printed = runner.invoke(app, ["schema"])
    assert printed.exit_code == 0 and json.loads(printed.output) == spec_json_schema()
    page = runner.invoke(app, ["schema", "--markdown"])
    assert page.exit_code == 0 and page.output == spec_reference_markdown()


def test_the_reference_page_is_up_to_date() -> None:
    committed = (REPO / REFERENCE_PAGE).read_text(encoding="utf-8")
    assert committed == spec_reference_markdown(), (
        f"{REFERENCE_PAGE} is older than the code: autoclf schema --markdown > {REFERENCE_PAGE}"
    )


def test_the_reference_page_has_every_field_and_working_anchors() -> None:
    page = spec_reference_markdown()
    anchors = {
        re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", page, flags=re.M)
    }
    links = set(re.findall(r"\]\(#([^)]+)\)", page))
    assert links <= anchors
    for section in (
        "study",
        "study.sampler: tpe",
        "study.pruner: hyperband",
        "model.cnn",
        "final",
    ):
        assert f"\n## {section}\n" in page or f"\n### {section}\n" in page
    for field in ("budget", "image_size", "backbone", "filters", "lr", "mixup", "ensemble"):
        assert f"| `{field}` |" in page
