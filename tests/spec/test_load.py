"""Spec validation through the CLI: exit code 2 and the dotted field path for each bad spec."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from automl_clf.cli import app
from automl_clf.errors import SpecError
from automl_clf.models.factory import check_backbones
from automl_clf.search.samplers import search_warnings
from automl_clf.spec import load_spec, parse_spec
from tests.conftest import REPO, fresh_python, make_checkpoint, tiny_spec, write_spec
from tests.hub import with_stand_ins

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
        ("train", {"lr": math.inf}, "train.lr: must be a finite number, got inf"),
        ("train", {"weight_decay": math.inf}, "train.weight_decay: must be a finite number"),
        ("train", {"weight_decay": math.nan}, "train.weight_decay: must be a finite number"),
        ("train", {"lr": {"low": 1e-3, "high": math.inf}}, "train.lr.high: must be a finite"),
        ("model", {"dropout": {"choices": [0.1, math.nan]}}, "dropout.choices.1: must be a fin"),
        ("study", {"timeout": math.inf}, "study.timeout: must be a finite number"),
        ("study", {"seed": 10**30}, "study.seed: must be < 2147483648, got 1000000000000"),
        ("train", {"seed": -1}, "train.seed: must be >= 0, got -1"),
        # A rule holds for every value a search space can produce: range ends, every choice.
        (
            "augment",
            {"mixup": {"low": 0.0, "high": 0.9}, "cutmix": {"low": 0.0, "high": 0.9}},
            "augment: mixup + cutmix are shares of batches and must sum to <= 1, but the "
            "space reaches 0.9 + 0.9",
        ),
        (
            "augment",
            {"mixup": {"choices": [0.2, 0.8]}, "cutmix": 0.5},
            "the space reaches 0.8 + 0.5",
        ),
        (
            "train",
            {"warmup_epochs": {"low": 0.0, "high": 5.0}},
            "train: warmup_epochs must be < epochs (3), got 5.0",
        ),
        (
            "augment",
            {
                "policy": "none",
                "transforms": {"choices": [[{"name": "Affine"}], [{"name": "GaussianBlurr"}]]},
            },
            "augment.transforms: choices.1: transforms[0]: unknown albumentations transform "
            "'GaussianBlurr'. Did you mean 'GaussianBlur'",
        ),
        (
            "augment",
            {"policy": {"choices": ["light", [{"name": "Affine", "rotte": 3}]]}},
            "augment.policy: choices.1: transforms[0]: Affine: invalid arguments",
        ),
        (
            "augment",
            {"policy": [{"name": "Affine"}], "hflip": True},
            "augment: hflip and magnitude apply to named policies, and every policy this spec "
            "can pick is a custom list",
        ),
        (
            "augment",
            {"policy": "light", "transforms": [{"name": "Affine"}]},
            "augment: give either a policy or transforms, not both",
        ),
        (
            "model",
            {"cnn": {"kernel_size": {"low": 3, "high": 5}}},
            "model.cnn.kernel_size: kernel size must be odd (to keep 'same' padding), got 4",
        ),
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


# What the structural pass must never import: each takes seconds (spec/load.py parse_spec).
HEAVY = ("torch", "timm", "sklearn", "albumentations", "numpy", "optuna")
# A spec with a custom augmentation list and a timm backbone: the two checks that used to import
# albumentations and timm; each case below breaks one rule of its structure.
STRUCTURE_ERRORS = [
    ("train", {"epocs": 3}, "train.epocs: unknown field (did you mean 'epochs'?"),
    (
        "model",
        {"backbone": {"choices": ["test_resnet", "resnet5O"]}},
        "model.backbone: Unknown backbone 'resnet5O'. Did you mean 'resnet50' or 'resnet51q' or "
        "'resnet50t'? List them with: autoclf backbones 'resnet*'",
    ),
    ("train", {"lr": {"low": -1e-3, "high": 1e-2}}, "train.lr.low: must be > 0.0, got -0.001"),
]


def _with_library_checks(digits_root: Path, tmp_path: Path, section: str, values: Any) -> Path:
    spec = tiny_spec(digits_root, tmp_path)
    spec["model"]["backbone"] = {"choices": ["cnn", "test_resnet"]}
    spec["augment"] = {"policy": {"choices": ["light", [{"name": "Affine", "p": 0.5}]]}}
    spec[section] = {**spec[section], **values}
    return write_spec(tmp_path / "bad.yaml", spec)


@pytest.mark.parametrize(("section", "values", "expected"), STRUCTURE_ERRORS)
def test_a_structure_error_is_raised_before_any_heavy_import(
    tmp_path: Path, digits_root: Path, section: str, values: Any, expected: str
) -> None:
    path = _with_library_checks(digits_root, tmp_path, section, values)
    code = (
        "import json, sys\n"
        "from automl_clf import SpecError, load_spec\n"
        "try:\n"
        f"    load_spec({str(path)!r})\n"
        "except SpecError as exc:\n"
        f"    print(json.dumps([str(exc), [m for m in {HEAVY!r} if m in sys.modules]]))\n"
    )
    done = fresh_python("-c", code)
    assert done.returncode == 0, done.stderr
    message, imported = json.loads(done.stdout)
    assert expected in message
    assert imported == []


@pytest.mark.parametrize(("section", "values", "expected"), STRUCTURE_ERRORS)
def test_validate_prints_a_structure_error_before_any_heavy_import(
    tmp_path: Path, digits_root: Path, section: str, values: Any, expected: str
) -> None:
    path = _with_library_checks(digits_root, tmp_path, section, values)
    # -X importtime writes each module to stderr as it is imported, up to the exit.
    done = fresh_python("-X", "importtime", "-m", "automl_clf.cli", "validate", str(path))
    assert done.returncode == 2
    assert expected in done.stderr
    imported = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "automl_clf" in imported  # the listing is read right
    assert imported.isdisjoint(HEAVY)


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


def test_a_spec_that_is_not_utf8_text_is_clear(tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes(b"study:\n  name: caf\xe9\n")
    result = validate(tmp_path / "latin1.yaml")
    assert result.exit_code == 2
    assert "not UTF-8 text" in result.output and "line 2" in result.output
    assert "Traceback" not in result.output


def test_an_integer_too_long_to_read_is_clear(tmp_path: Path) -> None:
    (tmp_path / "digits.yaml").write_text("study:\n  seed: " + "9" * 5000 + "\n")
    result = validate(tmp_path / "digits.yaml")
    assert result.exit_code == 2
    assert "line 2" in result.output and "5000 digits" in result.output
    assert "Traceback" not in result.output


def test_a_spec_larger_than_the_cap_is_refused_unread(tmp_path: Path) -> None:
    (tmp_path / "big.yaml").write_text("# padding\n" * 120_000)  # 1.2 MB
    result = validate(tmp_path / "big.yaml")
    assert result.exit_code == 2
    assert "1,200,000 bytes" in result.output and "at most 1,000,000" in result.output


def test_a_spec_nested_too_deeply_is_clear(tmp_path: Path) -> None:
    (tmp_path / "deep.yaml").write_text("data: " + "[" * 5000 + "]" * 5000 + "\n")
    result = validate(tmp_path / "deep.yaml")
    assert result.exit_code == 2
    assert "nested too deeply" in result.output and "Traceback" not in result.output


def billion_laughs(levels: int) -> str:
    lines = ["a0: &a0 [lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(billion_laughs(10))  # 10^9 strings once expanded
    result = validate(tmp_path / "bomb.yaml")
    assert result.exit_code == 2
    assert (
        "more than 100,000 values (an alias counts its values each time it is used)"
        in result.output
    )
    (tmp_path / "loop.yaml").write_text("data: &loop\n  root: [*loop]\n")
    result = validate(tmp_path / "loop.yaml")
    assert result.exit_code == 2
    assert "line 2" in result.output and "refers to a node that contains it" in result.output


def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path: Path, spec_file: Path) -> None:
    text = spec_file.read_text() + "study:\n  n_trials: 50\n"
    first = 1 + text.splitlines().index("study:")
    (tmp_path / "twice.yaml").write_text(text)
    result = validate(tmp_path / "twice.yaml")
    assert result.exit_code == 2
    last = len(text.splitlines()) - 1
    assert f"duplicate key 'study' (lines {first} and {last})" in result.output.replace("\n", " ")
    assert "Traceback" not in result.output


def test_merge_keys_may_override_what_they_merge(tmp_path: Path, digits_root: Path) -> None:
    text = (
        "base: &base {epochs: 2, batch_size: 16}\n"
        f"data: {{root: {digits_root}, image_size: 8, channels: 1}}\n"
        "train: {<<: *base, epochs: 3}\n"
    )
    (tmp_path / "merge.yaml").write_text(text)
    with pytest.raises(SpecError, match=r"^base: unknown field"):  # parsed; the extra key counts
        load_spec(tmp_path / "merge.yaml")


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
def test_every_example_spec_validates(
    path: Path, digits_root: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    raw = yaml.safe_load(path.read_text())
    raw["data"]["root"] = str(digits_root)  # the example's data may not be written here
    model = raw.get("model", {})
    if model.get("pretrained") is True:  # nor timm's weights: test_* stand-ins, cached here
        request.getfixturevalue("offline_hub")
        raw = with_stand_ins(raw)
    elif model.get("pretrained") not in (None, "cache"):  # nor its checkpoint: make one
        model["pretrained"] = str(make_checkpoint(tmp_path, model["backbone"]))
    spec = parse_spec(raw, base_dir=path.parent)
    assert spec.data.root == digits_root
    check_backbones(spec)  # every backbone fits the example's image size
    assert search_warnings(spec) == []  # its sampler, pruner and space all act in its budget


def test_schema_is_json_schema_of_the_spec() -> None:
    import json

    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    sections = {"study", "data", "model", "train", "augment", "final"}
    assert set(schema["properties"]) == {"version", *sections}
    assert schema["required"] == ["data"]
