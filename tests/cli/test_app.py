"""The CLI's general habits: flags and help, `--version`, `--set` overrides, `--format json`,
commands that leave nothing behind when there is nothing to do, and an interrupted export."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

import automl_clf
from automl_clf.cli import app
from automl_clf.errors import SpecError
from automl_clf.final.folder import check_replaceable
from automl_clf.search.study import load_existing_study
from automl_clf.spec.load import apply_overrides, load_spec, parse_override
from tests.conftest import CUT_EPOCHS, Exported, python_env, tiny_spec, write_spec

runner = CliRunner()
COMMANDS = sorted(get_command(app).commands)  # type: ignore[attr-defined]
SPEC_COMMANDS = ["validate", "search", "run", "best", "status", "dashboard"]


def _files(folder: Path) -> set[Path]:
    return {path.relative_to(folder) for path in folder.rglob("*")}


# Flags, help and version


@pytest.mark.parametrize("command", COMMANDS)
def test_h_is_help_and_flags_take_no_value(command: str) -> None:
    result = runner.invoke(app, [command, "-h"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert "<bool>" not in result.output  # --force, --help: no value to give


def test_a_flag_given_a_value_is_an_error(spec_file: Path) -> None:
    result = runner.invoke(app, ["search", str(spec_file), "--force", "true"])
    assert result.exit_code == 2
    assert "unexpected extra argument(s) (true)" in result.output


def test_version_prints_the_package_version_and_the_formats_it_reads() -> None:
    from automl_clf.versions import FORMATS, MODEL_JSON

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    package, formats = result.output.strip().splitlines()
    assert package == f"autoclf {automl_clf.__version__}"  # what scripts read: the first line
    assert formats == "reads " + ", ".join(f"{f.name} {f.reads()}" for f in FORMATS)
    assert f"model.json 1–{MODEL_JSON.version}" in formats


@pytest.mark.parametrize("command", COMMANDS)
def test_help_paragraphs_are_flowed_not_broken_mid_sentence(command: str) -> None:
    """Rich keeps a help text's line breaks; each paragraph must be one line for it to wrap."""
    help_text = get_command(app).commands[command].help or ""  # type: ignore[attr-defined]
    for paragraph in help_text.split("\n\n"):
        lines = paragraph.splitlines()
        assert all(line.lstrip().startswith(("- ", "* ")) for line in lines[1:]), paragraph


@pytest.mark.parametrize("columns", [80, 120])
def test_help_wraps_at_the_terminal_width(columns: int) -> None:
    result = runner.invoke(app, ["search", "--help"], env={"COLUMNS": str(columns)})
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= columns
    if columns == 120:  # the source breaks this sentence after "on"; the help must not
        assert any("(processes or machines) on one storage share it" in line for line in lines)


# --set


def test_set_values_are_read_as_yaml() -> None:
    assert parse_override("train.epochs=3") == ("train.epochs", 3)
    assert parse_override("study.name=short") == ("study.name", "short")
    assert parse_override("train.lr={low: 1.0e-4, high: 0.01, log: true}") == (
        "train.lr",
        {"low": 1e-4, "high": 0.01, "log": True},
    )
    assert parse_override("study.pruner=") == ("study.pruner", None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train.epochs", "--set takes KEY=VALUE"),
        ("=3", "--set takes KEY=VALUE"),
        ("train..epochs=3", "--set takes KEY=VALUE"),
        ("train.lr={low: 1", "--set train.lr: the value '{low: 1' is not valid YAML"),
    ],
)
def test_a_malformed_set_is_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("{", r"\{").replace(".", r"\.")):
        parse_override(text)


def test_overrides_set_nested_values_and_leave_the_file_s_mapping_alone() -> None:
    raw: dict[str, Any] = {"train": {"epochs": 3, "lr": 0.01}, "final": None}
    changed = apply_overrides(raw, {"train.epochs": 1, "final.ensemble": 2, "model.dropout": 0})
    assert changed == {
        "train": {"epochs": 1, "lr": 0.01},
        "final": {"ensemble": 2},
        "model": {"dropout": 0},
    }
    assert raw == {"train": {"epochs": 3, "lr": 0.01}, "final": None}
    with pytest.raises(SpecError, match=r"train\.lr is 0\.01, which has no field 'low'"):
        apply_overrides(raw, {"train.lr.low": 1e-4})


def test_load_spec_applies_overrides_before_validation(spec_file: Path) -> None:
    spec = load_spec(
        spec_file,
        overrides={"train.epochs": 1, "train.lr": {"low": 1e-4, "high": 1e-2, "log": True}},
        study_name="renamed",
    )
    assert spec.train.epochs == 1
    assert spec.study.name == "renamed"
    with pytest.raises(SpecError, match=r"train\.epochs: must be >= 1, got 0"):
        load_spec(spec_file, overrides={"train.epochs": 0})


def test_set_on_the_command_line_overrides_the_file(spec_file: Path) -> None:
    lr = "train.lr={low: 1.0e-4, high: 1.0e-3, log: true}"
    result = runner.invoke(app, ["validate", str(spec_file), "--set", lr, "--set", "study.seed=7"])
    assert result.exit_code == 0, result.output
    assert "0.0001" in result.output and "0.001" in result.output  # the range validate lists


@pytest.mark.parametrize("command", SPEC_COMMANDS)
def test_a_misspelt_set_key_is_the_same_did_you_mean_error_as_in_a_file(
    command: str, spec_file: Path
) -> None:
    result = runner.invoke(app, [command, str(spec_file), "--set", "train.epoch=2"])
    assert result.exit_code == 2
    assert "train.epoch: unknown field (did you mean 'epochs'?" in result.output
    assert "Traceback" not in result.output


# --format json, and nothing left behind


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory, digits_root: Path) -> Path:
    """A study of two trials, searched through `--set`."""
    folder = tmp_path_factory.mktemp("searched")
    spec = write_spec(folder / "spec.yaml", tiny_spec(digits_root, folder))
    result = runner.invoke(app, ["search", str(spec), "--set", "study.n_trials=2"])
    assert result.exit_code == 0, result.output
    return spec


def test_status_json_parses_and_counts_the_trials(searched: Path) -> None:
    result = runner.invoke(app, ["status", str(searched), "--format", "json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    trials = status["trials"]
    assert trials["complete"] + trials["pruned"] == 2 and trials["fail"] == 0
    assert status["study"] == "tiny" and status["objectives"] == ["val_loss"]
    assert [w["trials"]["complete"] + w["trials"]["pruned"] for w in status["workers"]] == [2]
    assert status["running"] == [] and status["failed"] == []
    assert set(status["best_trial"]["values"]) == {"val_loss"}


def test_best_json_parses_and_names_the_best_trial(searched: Path) -> None:
    result = runner.invoke(app, ["best", str(searched), "--format", "json"])
    assert result.exit_code == 0, result.output
    best = json.loads(result.stdout)
    trial = best["best_trial"]
    assert trial["state"] == "complete" and trial["optuna_state"] == "COMPLETE"
    assert set(trial["params"]) >= {"train.lr", "model.dropout"}
    assert trial["metrics"]["val_loss"] == trial["values"]["val_loss"]
    assert trial["metrics"]["best_epoch"] >= 1
    table = runner.invoke(app, ["best", str(searched)])
    assert f"Best trial #{trial['number']}" in table.output


def test_status_and_best_name_a_trial_cut_at_the_deadline_and_count_it_usable(
    deadline_study: Path,
) -> None:
    """Issue 17: a trial the time budget cut (Optuna: PRUNED) was 'pruned' and `status` said
    'no complete (feasible) trial yet'. It is 'cut at the deadline', usable, and the best."""
    status = runner.invoke(app, ["status", str(deadline_study)])
    assert status.exit_code == 0, status.output
    text = " ".join(status.output.split())
    assert "2 trials, 1 usable (complete or cut at the deadline)" in text
    assert "no usable trial" not in text and "no complete" not in text
    assert "best trial #0 (cut at the deadline): val_loss" in text
    header, counts = [line.split("┃" if "┃" in line else "│") for line in _table_rows(status)]
    by_state = dict(zip([h.strip() for h in header], [c.strip() for c in counts], strict=True))
    assert by_state["cut at the deadline"] == "1" and by_state["pruned"] == "1"
    assert by_state["complete"] == "0"

    best = runner.invoke(app, ["best", str(deadline_study)])
    assert best.exit_code == 0, best.output
    text = " ".join(best.output.split())
    assert "1 cut at the deadline, 1 pruned" in text
    assert "Best trial #0" in text and "│ state │ cut at the deadline │" in text


def _table_rows(result: Any) -> list[str]:
    """The header and the one row of `status`'s first table (trials by state)."""
    lines = result.output.splitlines()
    start = next(i for i, line in enumerate(lines) if "usable" in line)
    return [line for line in lines[start:] if "┃" in line or "│" in line][:2]


def test_status_and_best_json_give_a_cut_trial_its_own_state_and_best_epoch_value(
    deadline_study: Path,
) -> None:
    spec = load_spec(deadline_study)
    study = load_existing_study(spec.study.storage, spec.study.name)
    cut = study.trials[0]
    for command in ("status", "best"):
        result = runner.invoke(app, [command, str(deadline_study), "--format", "json"])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["trials"]["cut_at_deadline"] == 1 and summary["trials"]["pruned"] == 1
        assert summary["trials"]["complete"] == 0 and summary["usable"] == 1
        trial = summary["best_trial"]
        assert trial["number"] == 0
        assert trial["state"] == "cut_at_deadline" and trial["optuna_state"] == "PRUNED"
        assert trial["stopped_by"] == "deadline"
        # the best epoch's value, not the last epoch's that Optuna holds for a pruned trial
        assert trial["values"]["val_loss"] == cut.user_attrs["objective_value"]
        assert trial["metrics"]["epochs_run"] == CUT_EPOCHS
    status = json.loads(
        runner.invoke(app, ["status", str(deadline_study), "--format", "json"]).stdout
    )
    (worker,) = status["workers"]
    assert worker["trials"]["cut_at_deadline"] == 1 and worker["trials"]["pruned"] == 1


def test_best_export_json_reports_the_export(searched: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    args = ["best", str(searched), "--export", str(out), "--format", "json"]
    result = runner.invoke(app, [*args, "--set", "final.tta=[]"])
    assert result.exit_code == 0, result.output
    export = json.loads(result.stdout)["export"]  # the progress went to stderr
    assert export["folder"] == str(out)
    assert 0 <= export["test"]["accuracy"] <= 1
    assert (out / "report" / "index.html").is_file()


@pytest.mark.parametrize("command", ["best", "status", "dashboard"])
def test_a_command_before_any_search_creates_no_database(command: str, tmp_path: Path) -> None:
    """The spec names no storage: the default would be studies/<name>.db beside it."""
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "data").mkdir()
    raw = tiny_spec(tmp_path / "data", tmp_path)
    del raw["study"]["storage"]
    spec = write_spec(project / "spec.yaml", raw)
    result = runner.invoke(app, [command, str(spec)])
    assert result.exit_code == 1
    assert "does not exist yet; run `autoclf search SPEC` first" in result.output
    assert _files(project) == {Path("spec.yaml")}


def test_validate_writes_nothing_until_a_cache_exists(tmp_path: Path, digits_root: Path) -> None:
    raw = tiny_spec(digits_root, tmp_path)
    del raw["study"]["storage"]
    project = tmp_path / "project"
    project.mkdir()
    spec = write_spec(project / "spec.yaml", raw)
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 0, result.output
    assert _files(project) == {Path("spec.yaml")}
    (project / "studies" / "cache").mkdir(parents=True)  # as a search leaves it
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 0, result.output
    assert (project / "studies" / "cache" / "decoded").is_dir()  # filled, as a search would


def test_validate_still_lists_an_unreadable_image_without_a_cache(
    tmp_path: Path, digits_root: Path
) -> None:
    data = tmp_path / "data"
    for image in digits_root.rglob("*.png"):
        target = data / image.relative_to(digits_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(image.read_bytes())
    (data / "0" / "broken.png").write_bytes(b"\x89PNG not really")
    raw = tiny_spec(data, tmp_path)
    raw["data"]["cache_dir"] = str(tmp_path / "no-cache-here")
    spec = write_spec(tmp_path / "spec.yaml", raw)
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 0, result.output
    assert "broken.png" in result.output
    assert not (tmp_path / "no-cache-here").exists()


def test_piped_output_is_not_wrapped_at_80_columns(searched: Path, tmp_path: Path) -> None:
    deep = tmp_path / ("a-folder-name-long-enough-to-push-a-line-past-eighty-columns-" * 2)
    deep.mkdir()
    database = deep / "tiny.db"
    database.write_bytes((searched.parent / "tiny.db").read_bytes())
    storage = f"sqlite:///{database}"
    result = runner.invoke(
        app, ["status", str(searched), "--storage", storage], env={"COLUMNS": None}
    )
    assert result.exit_code == 0, result.output
    assert f"study 'tiny' in {storage}" in result.output.splitlines()


# Interrupting `best --export`

# `autoclf ARGS` in a process that pauses at `module.name` (writing the file argv[1] first),
# so a test signals it at a known moment of the export.
PAUSED_AUTOCLF = """
import importlib, signal, sys, time
from pathlib import Path
where = importlib.import_module("{module}")
signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, even in a background job
ready = Path(sys.argv[1])
def paused(*args, **kwargs):
    ready.write_text("paused")
    time.sleep(300)
where.{name} = paused
sys.argv = ["autoclf", *sys.argv[2:]]
from automl_clf.cli.app import main
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "pause_at"),
    [
        (signal.SIGTERM, "automl_clf.final.export._write"),  # inside the staging folder
        (signal.SIGINT, "automl_clf.final.retrain.retrain"),  # before it exists
    ],
    ids=["SIGTERM while writing", "SIGINT while retraining"],
)
def test_an_interrupted_best_export_exits_130_saying_so_and_leaves_no_partial_export(
    exported: Exported, tmp_path: Path, signum: int, pause_at: str
) -> None:
    out = shutil.copytree(exported.folder, tmp_path / "exports" / "export")
    shutil.rmtree(out / "visualize", ignore_errors=True)  # another test's figures, if any
    marker = (out / "autoclf_export.json").read_text()
    ready = tmp_path / "ready"
    module, name = pause_at.rsplit(".", 1)
    script = PAUSED_AUTOCLF.format(module=module, name=name)
    args = ["best", str(exported.spec), "--export", str(out)]
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(ready), *args],
        env=python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(3000):  # 300 s at most, for the imports and the retrain under load
            if ready.exists() or process.poll() is not None:
                break
            time.sleep(0.1)
        assert ready.exists(), process.communicate()
        staging = [p.name for p in out.parent.iterdir() if ".partial-" in p.name]
        assert len(staging) == (1 if name == "_write" else 0)  # the moment the test meant
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, stdout + stderr
    assert "interrupted: nothing was exported" in stdout and "rerun the same command" in stdout
    assert "Traceback" not in stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["export"]  # no .export.partial-*
    assert (out / "autoclf_export.json").read_text() == marker  # the old export, whole
    check_replaceable(out)
