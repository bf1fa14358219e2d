"""The spec's published schema: `autoclf schema` (JSON Schema, for editors) and `autoclf schema
--markdown` (docs/spec-reference.md, for people), both read from the pydantic models.

Each field's description is its docstring in spec/*.py (see `SpecModel`), so the code, the
JSON Schema and the reference page cannot disagree; tests/spec/test_schema.py fails when the
committed page is older than the code. Pydantic names the `$defs` of a searchable field's
range and choice models after their type arguments' reprs
(`Choice_Annotated_float__FieldInfo_…`); they are renamed here after their titles
(`Choice_float_gt_0` for `Choice[float > 0]`), which spec/space.py makes readable.
"""

from __future__ import annotations

import json
import re
from typing import Any

from automl_clf.spec.models import Spec

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
REFERENCE_PAGE = "docs/spec-reference.md"
_DEFS = "#/$defs/"
_SPACE_MODELS = ("Choice_", "FloatRange_", "IntRange_")
_OPERATORS = ((">=", " ge "), ("<=", " le "), (">", " gt "), ("<", " lt "), ("|", " or "))


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file, with every field described and readable `$defs` names."""
    schema = Spec.model_json_schema()
    defs = schema.get("$defs", {})
    renamed = _readable_names(defs)
    schema = _rename_refs(schema, renamed)
    schema["$defs"] = {renamed.get(name, name): body for name, body in defs.items()}
    schema["$defs"] = _rename_refs(schema["$defs"], renamed)
    header = {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": "autoclf spec",
        "description": " ".join((Spec.__doc__ or "").split()),
    }
    return header | {k: v for k, v in schema.items() if k not in header}


def _readable_names(defs: dict[str, Any]) -> dict[str, str]:
    """Old `$defs` name -> a name made of its title (letters, digits and `_` only); a name two
    titles would share keeps pydantic's."""
    wanted = {name: _identifier(body.get("title", name)) for name, body in defs.items()}
    counts: dict[str, int] = {}
    for new in wanted.values():
        counts[new] = counts.get(new, 0) + 1
    return {old: new for old, new in wanted.items() if old != new and counts[new] == 1}


def _identifier(title: str) -> str:
    """`Choice[float >= 0, < 1]` -> `Choice_float_ge_0_lt_1`."""
    for operator, word in _OPERATORS:
        title = title.replace(operator, word)
    return "_".join(re.findall(r"[A-Za-z0-9]+", title))


def _rename_refs(value: Any, renamed: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {k: _rename_refs(v, renamed) for k, v in value.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith(_DEFS):
            name = ref.removeprefix(_DEFS)
            out["$ref"] = _DEFS + renamed.get(name, name)
        return out
    if isinstance(value, list):
        return [_rename_refs(v, renamed) for v in value]
    return value


def json_text() -> str:
    """`autoclf schema`'s output."""
    return json.dumps(spec_json_schema(), indent=2, ensure_ascii=False) + "\n"
