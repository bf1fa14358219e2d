"""Every format autoclf writes and reads back later, its schema version, and the migrations that
let this autoclf read what an older one wrote.

    format         its version                           what holds it
    spec           `version:` in the YAML (absent: 1)    the user's spec (spec/load.py)
    trial config   `config_version` beside `config`      each trial's user attribute `config`
                   (absent: 1), on a trial and in         (search/record.py), and model.json's
                   model.json                             `config` and members' configs
    model.json     `format_version`                      an export's manifest (final/manifest.py)
    export marker  `autoclf_export`                      autoclf_export.json (final/folder.py)

Reading. Each reader hands what it read, as plain JSON (dicts, lists, scalars) and before
pydantic validates it, to its format's `upgrade`: a version newer than this autoclf knows is
refused in one line that says which it reads and to upgrade autoclf; an older one goes through
the format's steps, one small function per version (`steps[0]` turns version 1 into 2, `steps[1]`
2 into 3, ...), as Optuna's alembic revisions keep old RDB studies loadable. Nothing is written
back: a study or an export stays as its writer left it, so that autoclf still reads it too.
Writers always write the current version, `Format.version`: one more than the number of steps,
so a format cannot change without the step that reads its previous version.

Changing a format (the version policy, CHANGELOG.md). Any change to what a stored format may hold
(the trial config, model.json, the export marker: a new field, a renamed or removed one, a value
that now means something else) appends one step to that format here, which turns a dict of the
previous version into one of the new version (a new field gets the value that reproduces the old
behaviour: saved configs say everything, so there is no default to lean on), with a test of that
step; tests/fixtures/ keeps what every release wrote and tests/test_fixtures.py reads it all.
The spec is written by people: a new optional field with a default needs no step (older specs
mean what they meant); a step is added only when an older spec would otherwise fail or change
meaning, and a renamed key is an entry of `RENAMED_SPEC_KEYS` instead: read, with a one-line
warning naming both, until the next minor release, then refused with its new name.

A trial config lives in two formats: on a study's trials and inside model.json (its `config` and
every member's). model.json records the config version it holds (`config_version`, from format
2), so a change to the trial config is one step of the trial config, read by both.

This module imports nothing from the rest of autoclf but its errors: every room may use it.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from automl_clf.errors import AutoclfError, ExportError, SpecError, StudyError

# The package's version; pyproject.toml reads it from here. CHANGELOG.md says what each changed.
__version__ = "0.2.0"

UPGRADE = "upgrade autoclf (pip install --upgrade autoclf)"

# One migration: a dict of version N (JSON: plain dicts, lists and scalars; its own deep copy,
# which the step may change) -> the same thing as version N + 1.
Step = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class Format:
    """One stored format: its name in messages, its steps, and where its version is."""

    name: str  # as messages name it: spec, trial config, model.json, export marker
    error: type[AutoclfError]  # what a version it cannot read raises
    key: str | None  # the version's key in the dict itself; None: stored beside it
    implicit_first: bool  # a dict without a version is version 1 (written before there was one)
    steps: list[Step] = field(default_factory=list)  # steps[i]: version i + 1 -> i + 2

    @property
    def version(self) -> int:
        """The version this autoclf writes."""
        return len(self.steps) + 1

    def reads(self) -> str:
        """`1` or `1–3`: the versions this autoclf reads."""
        return "1" if self.version == 1 else f"1–{self.version}"

    def check(self, stored: Any, where: str, error: type[AutoclfError] | None = None) -> int:
        """The version `stored` names, when this autoclf can read it.

        Raises:
            `error`, else the format's: `stored` is newer than this autoclf (it says to
                upgrade), or is no version at all (missing where it must be, not a whole
                number from 1).
        """
        error = error or self.error
        if stored is None and self.implicit_first:
            return 1
        if isinstance(stored, bool) or not isinstance(stored, int) or stored < 1:
            raise error(
                f"{where}: its {self.name} version must be a whole number from 1 to "
                f"{self.version}, got {stored!r}"
            )
        if stored > self.version:
            raise error(
                f"{where}: {self.name} version {stored}, but this autoclf ({__version__}) reads "
                f"{self.name} {self.reads()}: a newer autoclf wrote it; {UPGRADE}"
            )
        return stored

    def upgrade(
        self,
        data: Mapping[str, Any],
        stored: Any,
        where: str,
        error: type[AutoclfError] | None = None,
    ) -> dict[str, Any]:
        """`data`, of version `stored`, as the current version (a copy; `data` is unchanged).

        Args:
            stored: the version `data` was written as (None where none was recorded).
            where: the file or object, for messages (`model.json`, `trial #3`).
            error: what a version it cannot read raises (`check`); default the format's.
        """
        version = self.check(stored, where, error)
        upgraded = copy.deepcopy(dict(data))
        for step in self.steps[version - 1 :]:
            upgraded = step(upgraded)
        if self.key is not None:
            upgraded[self.key] = self.version
        return upgraded


def _model_json_2(data: dict[str, Any]) -> dict[str, Any]:
    """model.json 2 records which trial config version its configs are (`config_version`);
    format 1 held trial config 1 (autoclf 0.1)."""
    data["config_version"] = 1
    return data


SPEC = Format("spec", SpecError, key="version", implicit_first=True)
TRIAL_CONFIG = Format("trial config", StudyError, key=None, implicit_first=True)
MODEL_JSON = Format(
    "model.json", ExportError, key="format_version", implicit_first=False, steps=[_model_json_2]
)
EXPORT_MARKER = Format("export marker", ExportError, key="autoclf_export", implicit_first=False)
FORMATS = (SPEC, TRIAL_CONFIG, MODEL_JSON, EXPORT_MARKER)


def formats_read() -> str:
    """`spec 1, trial config 1, model.json 1–2, export marker 1` (autoclf --version)."""
    return ", ".join(f"{f.name} {f.reads()}" for f in FORMATS)


def upgrade_model_json(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """An export's model.json, of any format this autoclf reads, as the current one: the
    manifest's own steps, then the trial config's on its `config` and each member's."""
    upgraded = MODEL_JSON.upgrade(data, data.get("format_version"), where)
    stored = upgraded.get("config_version")
    TRIAL_CONFIG.check(stored, f"{where} (config_version)", ExportError)
    owners = [upgraded, *[m for m in upgraded.get("members") or () if isinstance(m, dict)]]
    for owner in owners:
        if isinstance(owner.get("config"), dict):
            owner["config"] = TRIAL_CONFIG.upgrade(owner["config"], stored, where, ExportError)
    upgraded["config_version"] = TRIAL_CONFIG.version
    return upgraded


# Renamed spec keys -----------------------------------------------------------------------------


class RenamedKeyWarning(FutureWarning):
    """A spec used a key's old name: it still works, until the release the warning names."""


@dataclass(frozen=True)
class RenamedKey:
    """A spec key given a new name in release `since` (dotted paths, as --set takes them): the
    old one is read, with a warning, until the next minor release, then refused with the new
    name."""

    old: str  # e.g. train.lr_warmup
    new: str  # e.g. train.warmup_epochs
    since: str  # the autoclf release that renamed it, e.g. 0.3.0

    @property
    def read_until(self) -> str:
        """The first release that no longer reads the old name: the next minor one."""
        major, minor = _release(self.since)[:2]
        return f"{major}.{minor + 1}.0"

    @property
    def still_read(self) -> bool:
        return _release(__version__) < _release(self.read_until)


# (old -> new) renames, oldest first; an entry stays after its old name stops being read, so a
# spec that still uses it is told the new name.
RENAMED_SPEC_KEYS: list[RenamedKey] = []


def _release(version: str) -> tuple[int, ...]:
    """`0.3.1` -> (0, 3, 1); a suffix (`0.3.0rc1`, `0+unknown`) is ignored."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def upgrade_spec(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A spec mapping as the current spec version, its renamed keys under their new names
    (a `RenamedKeyWarning` each).

    Raises:
        SpecError: a version this autoclf cannot read; an old key given beside its new name,
            or one no longer read.
    """
    upgraded = SPEC.upgrade(raw, raw.get("version"), where)
    for renamed in RENAMED_SPEC_KEYS:
        found, value = _take(upgraded, renamed.old)
        if not found:
            continue
        _check_renamed(renamed, where, both=_take(upgraded, renamed.new, pop=False)[0])
        _put(upgraded, renamed.new, value)
    return upgraded


def renamed_override(key: str) -> str:
    """A `--set` key with a renamed spec key in it under its new name (a `RenamedKeyWarning`);
    `train.lr_warmup.low` -> `train.warmup_epochs.low`.

    Raises:
        SpecError: the key's old name is no longer read.
    """
    for renamed in RENAMED_SPEC_KEYS:
        if key == renamed.old or key.startswith(renamed.old + "."):
            _check_renamed(renamed, "--set", both=False)
            return renamed.new + key[len(renamed.old) :]
    return key


def _check_renamed(renamed: RenamedKey, where: str, *, both: bool) -> None:
    """Warn that `renamed.old` was used; refuse it beside its new name or once no longer read."""
    old, new, since = renamed.old, renamed.new, renamed.since
    if not renamed.still_read:
        raise SpecError(
            f"{where}: {old} was renamed {new} in autoclf {since} and is no longer read (since "
            f"{renamed.read_until}); write {new}"
        )
    if both:
        raise SpecError(
            f"{where}: {old} and {new} are both given, but they are one setting ({old} is its "
            f"name before autoclf {since}); keep {new} only"
        )
    warnings.warn(
        f"{where}: {old} is now called {new} (autoclf {since}); the old name is read until "
        f"autoclf {renamed.read_until}: rename it",
        RenamedKeyWarning,
        stacklevel=4,
    )


def _take(raw: dict[str, Any], path: str, *, pop: bool = True) -> tuple[bool, Any]:
    """Whether the dotted `path` is in `raw` (through mappings only), and its value (removed
    when `pop`)."""
    *parents, last = path.split(".")
    node: Any = raw
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or last not in node:
        return False, None
    return True, node.pop(last) if pop else node[last]


def _put(raw: dict[str, Any], path: str, value: Any) -> None:
    """Set the dotted `path` of `raw` to `value`, making the mappings on the way."""
    *parents, last = path.split(".")
    node = raw
    for depth, part in enumerate(parents):
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            where = ".".join(parents[: depth + 1])
            raise SpecError(f"{where} must be a mapping to hold {path}, got {node!r}")
    node[last] = value
