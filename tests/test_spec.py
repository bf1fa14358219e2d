"""Spec validation through the CLI: exit code 2 and the dotted field path for each bad spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from automl_clf.cli import app
from automl_clf.errors import SpecError
from automl_clf.models.factory import check_backbones
from automl_clf.spec import load_spec, parse_spec
from tests.conftest import REPO, make_checkpoint, tiny_spec, write_spec

runner = CliRunner()


def validate(path: Path) -> Any:
    return runner.invoke(app, ["validate", str(path)])


def test_good_spec_validates_with_summary(spec_file: Path) -> None:
    result = validate(spec_file)
    assert result.exit_code == 0, result.output
    assert "spec OK" in result.output
    assert "3 classes" in result.output
    assert "model.cnn.filters" in result.output  # the search space is listed


@pytest.mark.parametrize(
    ("section", "values", "expected"),
    [
        ("train", {"lr": {"low": -1.0, "high": 0.1}}, "train.lr.low: must be > 0"),
        ("train", {"lr": "fast"}, "train.lr: must be a number, got 'fast'"),
        (
            "train",
            {"batch_size": {"choices": [16, 0]}},
            "train.batch_size.choices.1: must be >= 1",
        ),
        ("train", {"lr": {"low": 0.1, "high": 0.01}}, "train.lr: low must be <= high"),
        ("train", {"learning_rate": 0.1}, "train.learning_rate: unknown field"),
        ("model", {"dropout": 1.5}, "model.dropout: must be < 1"),
        ("model", {"backbone": "resnet5O"}, "Did you mean 'resnet50'"),
        ("augment", {"policy": "extreme"}, "augment.policy: must be one of"),
        ("study", {"objective": "accuracy", "direction": "minimize"}, "must be maximized"),
        ("data", {"root": "does/not/exist"}, "data.root: folder not found"),
    ],
)
def test_bad_spec_exits_2_naming_the_field(
    tmp_path: Path, digits_root: Path, section: str, values: dict[str, Any], expected: str
) -> None:
    spec = tiny_spec(digits_root, tmp_path, **{section: values})
    result = validate(write_spec(tmp_path / "bad.yaml", spec))
    assert result.exit_code == 2
    assert expected in result.output
    assert "Traceback" not in result.output


def test_unknown_key_suggests_the_close_field(tmp_path: Path, digits_root: Path) -> None:
    spec = tiny_spec(digits_root, tmp_path, train={"epoch": 3})
    result = validate(write_spec(tmp_path / "bad.yaml", spec))
    assert result.exit_code == 2
    assert "did you mean 'epochs'?" in result.output


def test_not_yaml_mapping_and_bad_yaml_are_clear(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "broken.yaml").write_text("data: {root: [\n")
    for name, expected in (
        ("list.yaml", "must be a YAML mapping"),
        ("broken.yaml", "not valid YAML"),
    ):
        result = validate(tmp_path / name)
        assert result.exit_code == 2
        assert expected in result.output


def test_relative_paths_resolve_against_the_spec_folder(tmp_path: Path, digits_root: Path) -> None:
    folder = tmp_path / "project" / "specs"
    folder.mkdir(parents=True)
    spec = tiny_spec(digits_root, tmp_path)
    spec["data"]["root"] = str(Path("..") / ".." / ".." / digits_root.relative_to(tmp_path.parent))
    loaded = load_spec(write_spec(folder / "rel.yaml", spec))
    assert loaded.data.root == digits_root.resolve()


def test_default_storage_is_the_nearest_studies_folder(tmp_path: Path, digits_root: Path) -> None:
    (tmp_path / "studies").mkdir()
    (tmp_path / "specs").mkdir()
    spec = tiny_spec(digits_root, tmp_path)
    del spec["study"]["storage"], spec["study"]["name"]
    loaded = load_spec(write_spec(tmp_path / "specs" / "mine.yaml", spec))
    assert loaded.study.name == "mine"
    assert loaded.study.storage == f"sqlite:///{tmp_path / 'studies' / 'mine.db'}"
    assert loaded.study.artifacts == tmp_path / "studies" / "mine"
    assert loaded.data.cache_dir == tmp_path / "studies" / "cache"


def test_yaml_is_read_with_a_safe_loader(tmp_path: Path) -> None:
    (tmp_path / "evil.yaml").write_text("data: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path / "evil.yaml")


@pytest.mark.parametrize("path", sorted((REPO / "specs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_spec_validates(path: Path, digits_root: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    raw["data"]["root"] = str(digits_root)  # the example's data may not be written here
    model = raw.get("model", {})
    if model.get("pretrained") not in (None, "cache"):  # nor its checkpoint: make one
        model["pretrained"] = str(make_checkpoint(tmp_path, model["backbone"]))
    spec = parse_spec(raw, base_dir=path.parent)
    assert spec.data.root == digits_root
    check_backbones(spec)  # every backbone fits the example's image size


def test_schema_is_json_schema_of_the_spec() -> None:
    import json

    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert set(schema["properties"]) == {"study", "data", "model", "train", "augment", "final"}
    assert schema["required"] == ["data"]
