"""Read a spec file: safe YAML, pydantic validation, and one clear line per problem.

A bad spec never reaches training: every problem becomes a `SpecError` whose message names the
dotted field path, states the rule and the value received (`train.lr.low: must be > 0, got -1`).

The file itself is untrusted input too, so reading it is bounded: at most `MAX_SPEC_BYTES`,
UTF-8 only, and YAML aliases may not expand the document beyond `MAX_SPEC_VALUES` values (a
"billion laughs" file is a few hundred bytes that expand to gigabytes). A key written twice in one
mapping is an error, where YAML would silently keep the last.

A spec says which version of the spec format it is written in (`version:`, absent: 1): an older
one is migrated and a newer one refused before validation, and a key renamed in a recent release
is read under its new name with a one-line warning (automl_clf/versions.py).

Validation runs twice (`parse_spec`): the structure first, importing nothing heavy, so a typo,
a value out of range or an unknown backbone is reported at once; then, once that holds, the
checks that need albumentations or timm imported (seconds).
"""

from __future__ import annotations

import copy
import difflib
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from automl_clf.errors import SpecError
from automl_clf.spec.fields import STRUCTURE_ONLY
from automl_clf.spec.models import ResolvedDataSpec, ResolvedSpec, ResolvedStudySpec, Spec
from automl_clf.spec.space import CHOICES_TAG, RANGE_TAG, TAGS, VALUE_TAG, Choice, FloatRange
from automl_clf.versions import renamed_override, upgrade_spec

STUDIES_DIR = "studies"
MAX_SPEC_BYTES = 1_000_000  # a real spec is a few KB
MAX_SPEC_VALUES = 100_000  # scalars, lists and mappings once every alias is expanded
_MERGE_TAG = "tag:yaml.org,2002:merge"
M = TypeVar("M", bound=BaseModel)


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing alias bombs, cyclic aliases, keys given twice in one
    mapping and integers too long for Python to read; each as a `ConstructorError` with the
    line, so `load_spec` reports it like any other YAML error."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_nodes(node)
        return super().construct_document(node)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = sum(c.isdigit() for c in str(node.value))
        if digits > sys.get_int_max_str_digits():
            raise yaml.constructor.ConstructorError(
                problem=f"an integer of {digits} digits is too long to read (at most "
                f"{sys.get_int_max_str_digits()}); no spec value needs that many",
                problem_mark=node.start_mark,
            )
        value: int = super().construct_yaml_int(node)
        return value


_SpecLoader.add_constructor("tag:yaml.org,2002:int", _SpecLoader.construct_yaml_int)


def _check_nodes(root: yaml.Node) -> None:
    """Walk the composed document once, each node once however many aliases point at it
    (iteratively: a deep document must not hit the recursion limit here): count the values it
    expands to, and look for a cycle and for keys given twice in a mapping."""
    expanded: dict[int, int] = {}  # id(node) -> values it expands to, once finished
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = _children(node)
        if children_done:
            on_path.discard(id(node))
            expanded[id(node)] = 1 + sum(expanded[id(c)] for c in children)
            if expanded[id(node)] > MAX_SPEC_VALUES:
                raise yaml.constructor.ConstructorError(
                    problem=f"the document holds more than {MAX_SPEC_VALUES:,} values (an alias "
                    "counts its values each time it is used); a spec needs a few hundred",
                    problem_mark=node.start_mark,
                )
            continue
        if id(node) in expanded:
            continue
        if isinstance(node, yaml.MappingNode):
            _check_unique_keys(node)
        on_path.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise yaml.constructor.ConstructorError(
                    problem="an alias refers to a node that contains it (an endless value)",
                    problem_mark=node.start_mark,
                )
            if id(child) not in expanded:
                stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_unique_keys(node: yaml.MappingNode) -> None:
    """A key written twice in one mapping (two `study:` blocks) is an error naming both lines.
    Keys brought in by a merge (`<<: *base`) may be overridden: that is what merging is for."""
    first: dict[tuple[str, str], yaml.Node] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
            continue
        seen = first.setdefault((key.tag, key.value), key)
        if seen is not key:
            raise yaml.constructor.ConstructorError(
                problem=f"duplicate key {key.value!r} (lines {seen.start_mark.line + 1} and "
                f"{key.start_mark.line + 1}): the second would silently replace the first; "
                "merge them into one",
                problem_mark=key.start_mark,
            )


def load_spec(
    path: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    budget: str | float | None = None,
    device: str | None = None,
) -> ResolvedSpec:
    """Load and validate a spec file; relative paths inside it resolve against its folder.

    `overrides` (`--set`) replace values of the file before validation, so each is checked like
    the file's own: dotted paths to the value, e.g. `{"train.epochs": 3, "train.lr": {"low":
    1e-4, "high": 1e-2, "log": True}}`. `storage`, `study_name`, `budget` and `device`
    (`--storage`, `--study-name`, `--time`, `--device`) are the same as overriding
    `study.storage`, `study.name`, `study.budget` and `train.device`, applied after
    `overrides`.

    Fills the study name (the spec's, else the file's stem) and storage (the spec's, else
    SQLite `<name>.db` in the nearest `studies/` folder at or above the spec's folder, else a
    new `studies/` beside it), so a rerun of the same command from any working directory
    resumes the same study. Nothing is created on disk.

    Raises:
        SpecError: the file is missing, is not YAML, is of a spec version newer than this
            autoclf reads, or breaks a rule of the spec (an override too: an unknown key is the
            same did-you-mean error as in the file).
    """
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise SpecError(
            f"{path}: a spec must be a YAML mapping with sections such as data:, model:, "
            f"train:, got {type(raw).__name__}"
        )
    raw = upgrade_spec(raw, str(path))  # the current spec version, renamed keys renamed
    given = {"study.storage": storage, "study.name": study_name, "study.budget": budget}
    given["train.device"] = device
    changes = {**(overrides or {}), **{k: v for k, v in given.items() if v is not None}}
    changes = {renamed_override(key): value for key, value in changes.items()}
    spec = parse_spec(apply_overrides(raw, changes), base_dir=path.resolve().parent)
    return with_study_defaults(spec, spec_path=path)


def parse_override(text: str) -> tuple[str, Any]:
    """`--set KEY=VALUE`: the dotted key and the value read as YAML (as the file's values are),
    so `train.epochs=3` is the number 3 and `train.lr={low: 1e-4, high: 1e-2}` a range.

    Raises:
        SpecError: no `=`, an empty key part, or a value that is not YAML.
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise SpecError(
            f"--set takes KEY=VALUE with a dotted key, got {text!r}; e.g. --set train.epochs=3 "
            "or --set 'train.lr={low: 1e-4, high: 1e-2, log: true}' (the keys: autoclf schema)"
        )
    try:
        parsed = yaml.load(value, Loader=_SpecLoader) if value.strip() else None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(
            f"--set {key}: the value {value!r} is not valid YAML ({problem}); quote the whole "
            "argument for the shell, e.g. --set 'train.lr={low: 1e-4, high: 1e-2}'"
        ) from None
    return key, parsed


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`raw` with each dotted path set to its value (a copy; `raw` is left as it was).

    A missing section or key along the path is created, so a misspelt one reaches validation
    and gets its did-you-mean error there; a number indexes a list (`augment.custom.0.p`).

    Raises:
        SpecError: the path runs through a value that is neither a mapping nor a list.
    """
    result = copy.deepcopy(raw)
    for key, value in overrides.items():
        parts = key.split(".")
        node: Any = result
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                index: Any = int(part)
            elif isinstance(node, dict):
                index = part
                if not last and node.get(part) is None:  # `final:` left empty is a mapping
                    node[part] = {}
            else:
                where = ".".join(parts[:depth])
                raise SpecError(
                    f"--set {key}: {where} is {node!r}, which has no field {part!r}; set "
                    f"{where} as a whole (--set '{where}=VALUE'; a range is written "
                    "{low: 1e-4, high: 1e-2})"
                )
            if last:
                node[index] = value
            else:
                node = node[index]
    return result


def read_yaml(path: Path) -> Any:
    """The spec file's YAML document, read within the limits above.

    Raises:
        SpecError: unreadable, too large, not UTF-8, not YAML, or over a limit of the loader.
    """
    try:
        with path.open("rb") as file:
            data = file.read(MAX_SPEC_BYTES + 1)
            size = max(path.stat().st_size, len(data))
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec file ({exc.strerror or exc})") from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(
            f"{path}: a spec file may be at most {MAX_SPEC_BYTES:,} bytes, got {size:,} bytes; "
            "is this the spec you meant?"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(
            f"{path}: not UTF-8 text: byte {data[exc.start]:#04x} at line {line}; save the file "
            "as UTF-8"
        ) from None
    try:
        return yaml.load(text, Loader=_SpecLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"{path}: not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise SpecError(
            f"{path}: not valid YAML: nested too deeply for a spec (lists or mappings inside "
            "each other hundreds of levels deep)"
        ) from None


def parse_spec(raw: dict[str, Any], *, base_dir: Path) -> Spec:
    """Validate an already-parsed spec mapping; `base_dir` anchors its relative paths.

    Two passes: the structure first (every field, type, range, choice, cross-field rule and
    name) with nothing heavy imported, so a mistake there is reported in a fraction of a
    second; then, only once that holds, again with the checks that import a library (seconds:
    timm, albumentations; see `library_checks` in spec/fields.py).

    A spec of an older version (`version:`; absent: 1) is migrated first, and a renamed key is
    read under its new name with a `RenamedKeyWarning` (automl_clf/versions.py).
    """
    raw = upgrade_spec(raw, "spec")
    try:
        Spec.model_validate(raw, context={"base_dir": base_dir, STRUCTURE_ONLY: True})
        return Spec.model_validate(raw, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc)) from None


def with_study_defaults(spec: Spec, *, spec_path: Path) -> ResolvedSpec:
    """The spec with `study.name`, `.storage`, `.artifacts` and `data.cache_dir` filled in
    where the file left them out, typed as filled (`ResolvedSpec`)."""
    name = spec.study.name or spec_path.stem
    studies = default_studies_dir(spec_path)
    filled = {
        "name": name,
        "storage": spec.study.storage or f"sqlite:///{studies / name}.db",
        "artifacts": spec.study.artifacts or studies / name,
    }
    study = _construct(ResolvedStudySpec, spec.study, filled)
    data = _construct(
        ResolvedDataSpec, spec.data, {"cache_dir": spec.data.cache_dir or studies / "cache"}
    )
    return _construct(ResolvedSpec, spec, {"study": study, "data": data})


def _construct(cls: type[M], model: BaseModel, update: dict[str, Any]) -> M:
    """`model` as its subclass `cls` with `update` applied, without validating again (every
    value was validated as `model`'s; `update` holds what this module derived from them)."""
    values = {**{name: getattr(model, name) for name in type(model).model_fields}, **update}
    return cls.model_construct(_fields_set=model.model_fields_set | set(update), **values)


def default_studies_dir(spec_path: Path) -> Path:
    """The nearest existing `studies/` folder at or above the spec's folder, else one beside it."""
    folder = spec_path.resolve().parent
    for candidate in (folder, *folder.parents):
        if (candidate / STUDIES_DIR).is_dir():
            return candidate / STUDIES_DIR
    return folder / STUDIES_DIR


def format_validation_error(exc: ValidationError) -> str:
    """One line per error: `dotted.path: what is wrong, got <value>`."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = [part for part in error["loc"] if not _is_tag(part)]
        message = _describe(error, list(error["loc"]))
        if not loc and re.match(r"[a-z_]+\.[\w.]+: ", message):  # a Spec-level rule that
            lines.append(message)  # names its own field path
            continue
        where = ".".join(str(part) for part in loc) or "spec"
        lines.append(f"{where}: {message}")
    # A union member that failed for a reason unrelated to the value's form repeats the same
    # message; keep each line once, in order.
    return "\n".join(dict.fromkeys(lines))


def _describe(error: Any, loc: list[Any]) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    got = f", got {value!r}"
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind == "missing":
        return "required field is missing"
    bounds = {
        "greater_than": "must be > {gt}",
        "greater_than_equal": "must be >= {ge}",
        "less_than": "must be < {lt}",
        "less_than_equal": "must be <= {le}",
        "too_short": "must have at least {min_length} item(s)",
        "too_long": "must have at most {max_length} item(s)",
        "string_pattern_mismatch": "must match {pattern}",
    }
    if kind in bounds:
        return bounds[kind].format(**ctx) + got
    if kind == "union_tag_invalid":
        return _unknown_kind(str(ctx.get("tag", "")), str(ctx.get("expected_tags", "")))
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}" + got
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind in ("float_parsing", "float_type", "int_parsing", "int_type", "int_from_float"):
        return ("must be a whole number" if kind.startswith("int") else "must be a number") + got
    if kind == "finite_number":
        return "must be a finite number" + got
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false" + got
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a mapping of fields" + got
    if kind == "list_type":
        return "must be a list" + got
    return error["msg"].rstrip(".") + got


def _is_tag(part: Any) -> bool:
    """A union member's tag in an error location (`=range`, `=median`): it names no field."""
    return isinstance(part, str) and (part in TAGS or part.startswith("="))


def _unknown_kind(tag: str, expected: str) -> str:
    """`study.sampler: unknown kind 'tp' (did you mean 'tpe'? valid kinds: tpe, random, …)`."""
    got = tag.removeprefix("=")
    kinds = [k.strip(" '").removeprefix("=") for k in expected.split(",") if k.strip()]
    close = difflib.get_close_matches(got, kinds, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown kind {got!r} ({hint}valid kinds: {', '.join(kinds)})"


def _unknown_key(loc: list[Any]) -> str:
    """'unknown field' with the valid names of that section and a close match, if any.

    `loc` is pydantic's raw location, tags included: a tag says which form of a tunable field
    (range or choices) the section is.
    """
    key = str(loc[-1])
    model: Any = Spec
    for part in loc[:-1]:
        if part in (RANGE_TAG, CHOICES_TAG):
            model = FloatRange if part == RANGE_TAG else Choice
            continue
        if part == VALUE_TAG:
            continue
        if _is_tag(part):  # a kind union's member, e.g. study.pruner's `=median`
            model = _member_of_kind(model, part.removeprefix("="))
            continue
        field = model.model_fields.get(part) if _is_model(model) else None
        model = field.annotation if field is not None else None
        if model is None:
            break
        model = _model_of(model) or model
    if not _is_model(model):
        return "unknown field"
    valid = list(model.model_fields)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown field ({hint}valid fields: {', '.join(valid)})"


def _member_of_kind(annotation: Any, kind: str) -> Any:
    """The member of a kind union (see `_kind_union` in spec/models.py) whose kind is `kind`."""
    import typing

    stack = [annotation]
    while stack:
        candidate = stack.pop()
        if _is_model(candidate):
            field = candidate.model_fields.get("kind")
            if field is not None and field.default == kind:
                return candidate
            continue
        stack.extend(typing.get_args(candidate))
    return None


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as `CNNSpec` or `PrunerSpec | None`."""
    import typing

    candidates = [annotation, *typing.get_args(annotation)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None
