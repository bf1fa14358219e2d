"""automl_clf/versions.py: each format's version check and migration steps, model.json's trial
configs, renamed spec keys; and each reader that uses them (the spec, a trial's config,
model.json, the export marker) reads an older version and refuses a newer one in one line that
says to upgrade autoclf. tests/test_fixtures.py does the same end to end on real releases."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any, get_args

import optuna
import pytest
import yaml
from typer.testing import CliRunner

import automl_clf
from automl_clf.cli import app
from automl_clf.errors import ExportError, SpecError, StudyError
from automl_clf.final.folder import check_replaceable
from automl_clf.final.manifest import read_manifest
from automl_clf.final.retrain import trial_config
from automl_clf.spec.load import load_spec
from automl_clf.spec.models import Spec
from automl_clf.versions import (
    EXPORT_MARKER,
    FORMATS,
    MODEL_JSON,
    RENAMED_SPEC_KEYS,
    SPEC,
    TRIAL_CONFIG,
    Format,
    RenamedKey,
    RenamedKeyWarning,
    __version__,
    renamed_override,
    upgrade_model_json,
)
from tests.conftest import tiny_spec, write_spec

FIXTURE = Path(__file__).parent / "fixtures" / "autoclf-0.1.0"  # what autoclf 0.1.0 wrote
runner = CliRunner()


def this_minor() -> str:
    """This autoclf's release as `X.Y.0`: a key renamed in it is still read."""
    major, minor = __version__.split(".")[:2]
    return f"{major}.{minor}.0"


# --- the machinery --------------------------------------------------------------------------


def test_a_format_is_one_version_more_than_its_steps() -> None:
    for form in FORMATS:
        assert form.version == len(form.steps) + 1
        assert form.reads() == ("1" if form.version == 1 else f"1–{form.version}")


def test_upgrade_runs_the_steps_from_the_stored_version_on_a_copy() -> None:
    def step(n: int) -> Any:
        def run(data: dict[str, Any]) -> dict[str, Any]:
            data["ran"].append(n)
            return data

        return run

    form = Format("thing", SpecError, key="v", implicit_first=True, steps=[step(2), step(3)])
    stored = {"v": 2, "ran": []}
    assert form.upgrade(stored, 2, "x") == {"v": 3, "ran": [3]}
    assert stored == {"v": 2, "ran": []}  # unchanged
    assert form.upgrade({"ran": []}, None, "x") == {"v": 3, "ran": [2, 3]}  # absent: 1
    assert form.upgrade({"v": 3, "ran": []}, 3, "x") == {"v": 3, "ran": []}


@pytest.mark.parametrize("form", FORMATS, ids=lambda f: f.name)
def test_a_newer_version_is_refused_naming_what_this_autoclf_reads(form: Format) -> None:
    newer = form.version + 1
    with pytest.raises(form.error) as caught:
        form.upgrade({}, newer, "the file")
    message = str(caught.value)
    assert message == (
        f"the file: {form.name} version {newer}, but this autoclf ({__version__}) reads "
        f"{form.name} {form.reads()}: a newer autoclf wrote it; upgrade autoclf (pip install "
        "--upgrade autoclf)"
    )


@pytest.mark.parametrize("stored", [0, -1, "2", 1.0, True, [1]])
def test_a_version_that_is_no_whole_number_from_1_is_refused(stored: object) -> None:
    with pytest.raises(ExportError, match=r"model.json version must be a whole number from 1"):
        MODEL_JSON.upgrade({}, stored, "model.json")


def test_only_formats_that_began_without_a_version_read_its_absence_as_1() -> None:
    assert SPEC.check(None, "spec") == TRIAL_CONFIG.check(None, "trial #0") == 1
    for form in (MODEL_JSON, EXPORT_MARKER):
        with pytest.raises(ExportError, match="got None"):
            form.check(None, "x")


# --- model.json --------------------------------------------------------------------------------


def fixture_manifest() -> dict[str, Any]:
    return json.loads((FIXTURE / "export" / "model.json").read_text())


def test_model_json_1_is_read_as_holding_trial_config_1() -> None:
    old = fixture_manifest()
    assert old["format_version"] == 1 and "config_version" not in old
    upgraded = upgrade_model_json(old, "model.json")
    assert upgraded["format_version"] == MODEL_JSON.version
    assert upgraded["config_version"] == TRIAL_CONFIG.version
    assert upgraded["config"] == old["config"]  # trial config 1 is today's


def test_model_json_configs_go_through_the_trial_config_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def step(config: dict[str, Any]) -> dict[str, Any]:
        config["train"]["added"] = True
        return config

    monkeypatch.setattr(TRIAL_CONFIG, "steps", [step])
    upgraded = upgrade_model_json(fixture_manifest(), "model.json")
    assert upgraded["config_version"] == 2
    configs = [upgraded["config"], *(m["config"] for m in upgraded["members"])]
    assert len(configs) == 3 and all(c["train"]["added"] for c in configs)
    again = upgrade_model_json(upgraded, "model.json")  # written by it: not stepped again
    assert again == upgraded


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("format_version", f"model.json version {MODEL_JSON.version + 1}"),
        ("config_version", f"trial config version {TRIAL_CONFIG.version + 1}"),
    ],
)
def test_an_export_of_a_newer_autoclf_is_refused_in_one_line(
    key: str, says: str, tmp_path: Path
) -> None:
    export = Path(shutil.copytree(FIXTURE / "export", tmp_path / "export"))
    manifest = upgrade_model_json(fixture_manifest(), "model.json")
    manifest[key] += 1
    (export / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match="upgrade autoclf") as caught:
        automl_clf.load(export)
    assert says in str(caught.value) and "\n" not in str(caught.value)
    result = runner.invoke(app, ["predict", str(export), str(FIXTURE / "data" / "0")])
    assert result.exit_code == 2 and says in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_read_manifest_reads_what_the_export_writes(tmp_path: Path) -> None:
    """Today's model.json (format and config version current) reads back as it was."""
    current = read_manifest(FIXTURE / "export" / "model.json")
    path = tmp_path / "model.json"
    path.write_text(current.model_dump_json())
    assert read_manifest(path) == current


# --- the export marker -------------------------------------------------------------------------


def test_an_export_marked_by_a_newer_autoclf_is_left_untouched(tmp_path: Path) -> None:
    export = Path(shutil.copytree(FIXTURE / "export", tmp_path / "export"))
    check_replaceable(export)  # 0.1.0's marker: an export this autoclf may replace
    marker = export / "autoclf_export.json"
    data = json.loads(marker.read_text())
    data["autoclf_export"] = EXPORT_MARKER.version + 1
    marker.write_text(json.dumps(data))
    with pytest.raises(ExportError, match="is an export of a newer autoclf") as caught:
        check_replaceable(export)
    assert "left untouched" in str(caught.value) and "upgrade autoclf" in str(caught.value)


def test_an_older_export_marker_is_read_through_its_steps(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ran = []

    def step(data: dict[str, Any]) -> dict[str, Any]:
        ran.append(data["autoclf_export"])
        return data

    monkeypatch.setattr(EXPORT_MARKER, "steps", [step])
    export = Path(shutil.copytree(FIXTURE / "export", tmp_path / "export"))
    check_replaceable(export)  # marker 1, read as 2
    assert ran == [1]
    (export / "model.json").write_text("{}")
    with pytest.raises(ExportError, match="files changed"):
        check_replaceable(export)  # and still checks every file


# --- a trial's configuration -------------------------------------------------------------------


def frozen_trial(**user_attrs: Any) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(value=1.0, user_attrs=user_attrs)


def fixture_config() -> dict[str, Any]:
    config: dict[str, Any] = fixture_manifest()["config"]
    return config


def test_a_trial_config_of_an_older_version_is_migrated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Today's trial config is version 1: a trial without `config_version` reads as it is; with
    a next version's step, as the step makes it."""
    assert trial_config(frozen_trial(config=fixture_config())).train.lr > 0

    def step(config: dict[str, Any]) -> dict[str, Any]:  # e.g. a learning rate per 256 images
        config["train"]["lr"] *= 2
        return config

    monkeypatch.setattr(TRIAL_CONFIG, "steps", [step])
    lr = fixture_config()["train"]["lr"]
    assert trial_config(frozen_trial(config=fixture_config())).train.lr == 2 * lr
    current = frozen_trial(config=fixture_config(), config_version=2)
    assert trial_config(current).train.lr == lr


def test_a_trial_config_of_a_newer_autoclf_is_refused() -> None:
    newer = TRIAL_CONFIG.version + 1
    trial = frozen_trial(config=fixture_config(), config_version=newer)
    with pytest.raises(StudyError, match=rf": trial config version {newer}, but .*upgrade"):
        trial_config(trial)


def test_a_trial_config_that_does_not_validate_says_so() -> None:
    config = fixture_config()
    del config["train"]["lr"]
    with pytest.raises(StudyError, match=r"train.lr: Field required.*please report"):
        trial_config(frozen_trial(config=config))
    with pytest.raises(StudyError, match="stores no configuration"):
        trial_config(frozen_trial())


# --- the spec ----------------------------------------------------------------------------------


def spec_path(tmp_path: Path, digits_root: Path, **sections: Any) -> Path:
    raw = tiny_spec(digits_root, tmp_path)
    for key, value in sections.items():
        raw[key] = value
    return write_spec(tmp_path / "spec.yaml", raw)


def test_a_spec_without_a_version_is_version_1(tmp_path: Path, digits_root: Path) -> None:
    """... and read as the current version, through every step since."""
    assert load_spec(spec_path(tmp_path, digits_root)).version == SPEC.version
    assert load_spec(spec_path(tmp_path, digits_root, version=1)).version == SPEC.version


@pytest.mark.parametrize(
    ("version", "says"),
    [
        (SPEC.version + 1, f"spec version {SPEC.version + 1}, but this autoclf"),
        ("two", f"its spec version must be a whole number from 1 to {SPEC.version}, got 'two'"),
    ],
)
def test_a_spec_version_this_autoclf_does_not_read_is_a_spec_error(
    version: object, says: str, tmp_path: Path, digits_root: Path
) -> None:
    path = spec_path(tmp_path, digits_root, version=version)
    with pytest.raises(SpecError, match=f"^{path}: ") as caught:
        load_spec(path)
    assert says in str(caught.value)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and says in result.output


def test_a_spec_step_runs_on_older_specs_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, digits_root: Path
) -> None:
    def step(raw: dict[str, Any]) -> dict[str, Any]:  # e.g. epochs counted from 0 before
        raw["train"]["epochs"] += 1
        return raw

    monkeypatch.setattr(SPEC, "steps", [step])
    old = load_spec(spec_path(tmp_path, digits_root))  # no version: 1
    assert (old.version, old.train.epochs) == (2, 4)
    new = load_spec(spec_path(tmp_path, digits_root, version=2))
    assert (new.version, new.train.epochs) == (2, 3)


def test_the_written_spec_says_its_version(tmp_path: Path) -> None:
    """An export's spec.yaml and every spec autoclf writes name their version, so a later
    autoclf knows which steps they need."""
    dumped = Spec.model_validate({"data": {"root": str(tmp_path)}}).model_dump(mode="json")
    assert dumped["version"] == SPEC.version and next(iter(dumped)) == "version"


# --- renamed spec keys -------------------------------------------------------------------------


@pytest.fixture
def renamed(monkeypatch: pytest.MonkeyPatch) -> RenamedKey:
    """train.lr's old name was train.learning_rate, renamed in this release."""
    entry = RenamedKey("train.learning_rate", "train.lr", since=this_minor())
    monkeypatch.setattr("automl_clf.versions.RENAMED_SPEC_KEYS", [entry])
    return entry


def spec_with_old_name(tmp_path: Path, digits_root: Path, **train: Any) -> Path:
    raw = tiny_spec(digits_root, tmp_path)
    raw["train"].pop("lr")
    raw["train"].update(train)
    return write_spec(tmp_path / "spec.yaml", raw)


def test_a_renamed_key_is_read_under_its_new_name_with_one_warning(
    renamed: RenamedKey, tmp_path: Path, digits_root: Path
) -> None:
    path = spec_with_old_name(tmp_path, digits_root, learning_rate=0.02)
    with pytest.warns(RenamedKeyWarning) as caught:
        spec = load_spec(path)
    assert spec.train.lr == 0.02
    assert [str(w.message) for w in caught] == [
        f"{path}: train.learning_rate is now called train.lr (autoclf {renamed.since}); the old "
        f"name is read until autoclf {renamed.read_until}: rename it"
    ]


def test_the_cli_prints_a_renamed_key_warning_as_one_line(
    renamed: RenamedKey, tmp_path: Path, digits_root: Path
) -> None:
    path = spec_with_old_name(tmp_path, digits_root, learning_rate=0.02)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "learning_rate" in line]
    assert len(lines) == 1
    assert lines[0].startswith(f"warning: {path}: train.learning_rate is now called train.lr ")
    assert "spec OK" in result.stdout


def test_a_renamed_key_beside_its_new_name_is_an_error(
    renamed: RenamedKey, tmp_path: Path, digits_root: Path
) -> None:
    path = spec_with_old_name(tmp_path, digits_root, learning_rate=0.02, lr=0.01)
    with pytest.raises(SpecError, match=r"train\.learning_rate and train\.lr are both given"):
        load_spec(path)


def test_a_renamed_key_given_by_set_is_renamed_too(
    renamed: RenamedKey, tmp_path: Path, digits_root: Path
) -> None:
    path = spec_path(tmp_path, digits_root)
    with pytest.warns(RenamedKeyWarning, match="--set: train.learning_rate is now called"):
        spec = load_spec(path, overrides={"train.learning_rate": 0.05})
    assert spec.train.lr == 0.05
    with pytest.warns(RenamedKeyWarning):
        assert renamed_override("train.learning_rate.low") == "train.lr.low"
    assert renamed_override("train.learning_rate_x") == "train.learning_rate_x"


def test_a_key_renamed_a_minor_release_ago_is_refused_with_its_new_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, digits_root: Path
) -> None:
    entry = RenamedKey("train.learning_rate", "train.lr", since="0.0.1")
    monkeypatch.setattr("automl_clf.versions.RENAMED_SPEC_KEYS", [entry])
    assert entry.read_until == "0.1.0" and not entry.still_read
    path = spec_with_old_name(tmp_path, digits_root, learning_rate=0.02)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: an error
        with pytest.raises(SpecError, match=r"no longer read \(since 0.1.0\); write train.lr"):
            load_spec(path)


def test_a_renamed_key_is_read_for_one_minor_release() -> None:
    assert RenamedKey("a.b", "a.c", since="0.3.0").read_until == "0.4.0"
    assert RenamedKey("a.b", "a.c", since="1.2.5").read_until == "1.3.0"
    assert RenamedKey("a.b", "a.c", since=this_minor()).still_read


def test_every_renamed_key_names_a_field_of_the_spec_and_is_renamed_once() -> None:
    for entry in RENAMED_SPEC_KEYS:
        model: Any = Spec
        for part in entry.new.split("."):
            assert part in model.model_fields, entry
            annotation = model.model_fields[part].annotation
            model = next(
                (a for a in (annotation, *get_args(annotation)) if isinstance(a, type)), None
            )
    olds = [entry.old for entry in RENAMED_SPEC_KEYS]
    assert len(olds) == len(set(olds))


def test_the_fixture_spec_of_0_1_0_loads(tmp_path: Path) -> None:
    copied = Path(shutil.copytree(FIXTURE, tmp_path / "release", ignore=_studies))
    spec = load_spec(copied / "spec.yaml")
    assert spec.version == SPEC.version and spec.data.root == copied / "data"
    assert yaml.safe_load((copied / "spec.yaml").read_text()).get("version") is None


def _studies(folder: str, names: list[str]) -> list[str]:
    return [name for name in names if name in ("studies", "export")]
