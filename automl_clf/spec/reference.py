"""The spec reference page (`autoclf schema --markdown`, committed as docs/spec-reference.md):
every section and field of a spec with its type, default and description, rendered from the
published JSON Schema (spec/schema.py) so the page says exactly what editors are told.

One table per section, in the order a spec is written; a field that holds a section of its
own (`study.constraints`, `model.cnn`) or one of several kinds (`study.sampler`) links to it,
rendered right after its parent. The searchable forms (a range, a list of choices) are
described once, at the top.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from automl_clf.spec.schema import REFERENCE_PAGE, spec_json_schema

_SPACE_PREFIXES = ("Choice_", "FloatRange_", "IntRange_")
_VALUE = {"type": "number"}  # a range's ends, of any numeric field
_VALUES = {"type": "array", "items": {}, "minItems": 1}  # choices, of any field
_BOUNDS = (
    ("minimum", "≥"),
    ("exclusiveMinimum", ">"),
    ("maximum", "≤"),
    ("exclusiveMaximum", "<"),
)

_INTRO = f"""\
# Spec reference

<!-- Written by `autoclf schema --markdown > {REFERENCE_PAGE}` from automl_clf/spec/;
tests/spec/test_schema.py fails when it is older than the code. Edit the docstrings, not this. -->

A spec is a YAML file of six sections; only `data` is required, every other field has the
default shown. Unknown keys are errors. Relative paths resolve against the spec file's folder.
`autoclf init DATA_DIR` writes a commented spec for a folder of images, `autoclf validate SPEC`
checks one, and `autoclf schema` prints this as JSON Schema for editor completion.

A field marked **searchable** takes a literal (never searched), a range, or a list of choices:

```yaml
lr: 1.0e-3                                  # literal
lr: {{low: 1.0e-4, high: 0.1, log: true}}     # range (numbers only)
batch_size: {{choices: [32, 64, 128]}}        # choices, of any YAML value (lists too)
```

The field's rules hold for both ends of a range and for every choice.
"""


class Queue:
    """The sections still to render below a table: (path, `$defs` name), each model once per
    page (a model two fields hold is rendered under the first and linked from the second)."""

    def __init__(self, placed: dict[str, str]) -> None:
        self.placed = placed  # $defs name -> the path of its section, for the whole page
        self.items: list[tuple[str, str]] = []

    def link(self, path: str, ref: str) -> str:
        """Where `ref`'s section is: `path`, queued now, or the path it was placed at first."""
        if ref not in self.placed:
            self.placed[ref] = path
            self.items.append((path, ref))
        return self.placed[ref]


def spec_reference_markdown() -> str:
    """The whole reference page, as Markdown."""
    schema = spec_json_schema()
    defs = schema["$defs"]
    parts = [_INTRO, _space_forms(defs)]
    properties = schema["properties"]
    top = {name: prop for name, prop in properties.items() if "$ref" not in prop}
    sections = {name: prop for name, prop in properties.items() if "$ref" in prop}
    links = ", ".join(f"[{name}](#{_anchor(name)})" for name in sections)
    parts.append(f"Sections: {links}. Beside them, at the top level:\n")
    parts.append(_table(defs, "", {"properties": top}, None))
    placed: dict[str, str] = {}
    for name, prop in sections.items():
        description = prop.get("description", "")
        parts.append(_section(defs, name, _ref_name(prop), description, 2, placed))
    return "\n".join(part.rstrip() + "\n" for part in parts)


def _space_forms(defs: dict[str, Any]) -> str:
    """The fields of a range and of a list of choices, from one instance of each."""
    lines = ["## Ranges and choices\n"]
    forms = (
        ("FloatRange_", "A range (of an integer field: the same, in whole numbers, step 1)"),
        ("Choice_", "Choices"),
    )
    for prefix, what in forms:
        model = defs[next(n for n in defs if n.startswith(prefix))]
        fields = dict(model["properties"])  # of one field's instance: say what all share
        for key, generic in (("low", _VALUE), ("high", _VALUE), ("choices", _VALUES)):
            if key in fields:
                fields[key] = generic | {"description": fields[key].get("description", "")}
        lines.append(f"{what}:\n")
        lines.append(_table(defs, "", model | {"properties": fields}, None))
    return "\n".join(lines)


def _section(
    defs: dict[str, Any],
    path: str,
    ref: str,
    description: str,
    level: int,
    placed: dict[str, str],
) -> str:
    """A heading, a model's table, then the sections of the models its fields hold."""
    model = defs[ref]
    text = _paragraphs(description or model.get("description", ""))
    queue = Queue(placed)
    out = [f"{'#' * min(level, 4)} {path}\n\n{text}\n", _table(defs, path, model, queue)]
    for child_path, child_ref in queue.items:
        out.append(_section(defs, child_path, child_ref, "", level + 1, placed))
    return "\n".join(out)


def _table(defs: dict[str, Any], path: str, model: dict[str, Any], queue: Queue | None) -> str:
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    required = set(model.get("required", ()))
    for name, prop in model.get("properties", {}).items():
        where = f"{path}.{name}" if path else name
        kind = _type(defs, where, prop, queue)
        default = "required" if name in required else _default(prop)
        description = " ".join(prop.get("description", "").split())
        rows.append(f"| `{name}` | {_cell(kind)} | {_cell(default)} | {_cell(description)} |")
    return "\n".join(rows) + "\n"


def _type(defs: dict[str, Any], path: str, prop: dict[str, Any], queue: Queue | None) -> str:
    """A property's type in words; a model it holds is queued as a section of its own."""
    if "$ref" in prop:
        return _model_link(path, _ref_name(prop), queue)
    alternatives = prop.get("oneOf") or prop.get("anyOf")
    if not alternatives:
        return _plain_type(defs, path, prop, queue)
    refs = [_ref_name(a) for a in alternatives if "$ref" in a]
    kinds = [r for r in refs if "kind" in defs[r].get("properties", {})]
    if kinds:  # a kind union: a kind's name alone, or a mapping of one kind
        links = []
        for ref in kinds:
            name = defs[ref]["properties"]["kind"]["default"]
            links.append(_model_link(f"{path}: {name}", ref, queue, f"`{name}`"))
        return f"one of {', '.join(links)}: the name alone, or a mapping with its settings"
    searchable = any(r.startswith(_SPACE_PREFIXES) for r in refs)
    values = [a for a in alternatives if not _ref_name(a).startswith(_SPACE_PREFIXES)]
    texts = [_type(defs, path, a, queue) for a in values if a.get("type") != "null"]
    text = " or ".join(dict.fromkeys(texts))
    return f"{text}; **searchable**" if searchable else text


def _plain_type(defs: dict[str, Any], path: str, prop: dict[str, Any], queue: Queue | None) -> str:
    if "const" in prop:
        return f"`{prop['const']}`"
    if "enum" in prop:
        return "one of " + ", ".join(f"`{v}`" for v in prop["enum"])
    kind = prop.get("type")
    if kind in ("number", "integer"):
        bounds = ", ".join(f"{op} {_number(prop[key])}" for key, op in _BOUNDS if key in prop)
        return f"{kind} {bounds}".strip()
    if kind == "string":
        if prop.get("format") == "path":
            return "path"
        if "examples" in prop:
            return "text such as " + ", ".join(f"`{e}`" for e in prop["examples"])
        return f"text matching `{prop['pattern']}`" if "pattern" in prop else "text"
    if kind == "boolean":
        return "true or false"
    if kind == "array":
        items = _type(defs, f"{path}[]", prop.get("items", {}), queue)
        low, high = prop.get("minItems"), prop.get("maxItems")
        size = f" ({low} to {high} items)" if low and high else f" (at least {low})" if low else ""
        return f"list of {items}{size}".replace("list of a mapping", "list of mappings")
    if kind == "object":
        return "mapping"
    return "any value"


def _model_link(path: str, ref: str, queue: Queue | None, text: str = "") -> str:
    """`a mapping ([data.split](#datasplit))`: a link to the model's section (queued under
    `path` unless it is placed already); without a queue (the table of ranges and choices), a
    plain `text`."""
    if queue is None:
        return text or "a mapping"
    where = queue.link(path, ref)
    link = f"[{where}](#{_anchor(where)})"
    return f"[{text}](#{_anchor(where)})" if text else f"a mapping ({link})"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _default(prop: dict[str, Any]) -> str:
    if "default" not in prop:
        return ""
    text = yaml.safe_dump([prop["default"]], default_flow_style=True, sort_keys=False, width=999)
    return f"`{text.strip()[1:-1]}`"


def _ref_name(prop: dict[str, Any]) -> str:
    return str(prop.get("$ref", "")).rsplit("/", 1)[-1]


def _paragraphs(text: str) -> str:
    """A docstring's paragraphs, each joined into one line."""
    return "\n\n".join(" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip())


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
