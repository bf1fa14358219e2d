"""The public API (`from automl_clf import …`) and the README's Python examples, run as written
on tiny data laid out where they expect it (specs/digits.yaml, data/digits/): in this process,
and as a plain script (no `__main__` guard) whose `jobs` helpers must run trials too."""

from __future__ import annotations

import contextlib
import io
import os
import pty
import re
import subprocess
import sys
import warnings
from pathlib import Path

import optuna
import pytest

import automl_clf
from automl_clf.datasets import write_digits
from automl_clf.search.record import TrialRecord
from tests.conftest import REPO, tiny_spec, write_spec

OPTUNA_LOG = re.compile(r"^\[[DIWE] \d{4}-", re.MULTILINE)  # Optuna's log lines: `[I 2026-…`


def readme_examples(section: str) -> list[str]:
    """The ```python blocks of a README section (`## <section>` up to the next `## `)."""
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.DOTALL)


def test_the_public_api_is_documented() -> None:
    for name in automl_clf.__all__:
        value = getattr(automl_clf, name)
        assert name == "__version__" or value.__doc__, name
    assert automl_clf.__version__.count(".") >= 1 or automl_clf.__version__ == "0+unknown"


def demo_layout(folder: Path, **study: object) -> Path:
    """specs/digits.yaml and data/digits/ in `folder`, standing for the demo's: 8 px images,
    trials of two epochs; the study in the spec's default storage (specs/studies/digits.db)."""
    write_digits(folder / "data" / "digits", classes=[0, 1, 3], per_class=20)
    raw = tiny_spec(
        Path("../data/digits"),  # relative to the spec, as the demo's
        folder,
        study={"name": "digits", **study},
        train={"epochs": 2},
        final={"tta": []},
    )
    del raw["study"]["storage"]
    raw["study"] = {k: v for k, v in raw["study"].items() if v is not None}
    return write_spec((folder / "specs").mkdir() or folder / "specs" / "digits.yaml", raw)


def demo_study(folder: Path) -> optuna.Study:
    storage = f"sqlite:///{folder / 'specs' / 'studies' / 'digits.db'}"
    return optuna.load_study(study_name="digits", storage=storage)


@pytest.mark.slow
def test_the_readme_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two trials (the spec's n_trials caps the search under the example's budget)."""
    demo_layout(tmp_path, n_trials=2)
    monkeypatch.chdir(tmp_path)
    examples = readme_examples("Python API")
    assert len(examples) == 2 and "from automl_clf import load_spec, run, load" in examples[0]
    for code in examples:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, "README.md", "exec"), {})
        assert printed.getvalue().strip()
    assert (tmp_path / "exports" / "digits" / "model.safetensors").is_file()
    assert (tmp_path / "specs" / "studies" / "digits.db").is_file()


def script_env() -> dict[str, str]:
    """A script's environment: it imports this checkout's autoclf."""
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def readme_script() -> str:
    """The README's first Python example as a plain script, with one substitution: the budget
    `time="2m"` becomes `time="90s", jobs=2`, so a helper process runs even on a one-core
    machine, in less time. The budget leaves the helper time to start (a new interpreter
    importing torch: 20 s and more on a loaded 2-core machine) well before the search ends."""
    (example,) = [code for code in readme_examples("Python API") if "run(spec" in code]
    assert example.count('time="2m"') == 1, example
    assert "__main__" not in example
    return example.replace('time="2m"', 'time="90s", jobs=2')


@pytest.mark.slow
def test_the_readme_example_runs_as_a_plain_script_with_helpers(tmp_path: Path) -> None:
    """No `if __name__ == "__main__"` guard, as a user would write it: the helper must not
    run the script again (multiprocessing's spawn did, and died), and no Optuna warning or
    log line reaches stderr. The search has no trial cap, so it runs until its deadline and
    both processes run trials."""
    demo_layout(tmp_path, n_trials=None)
    (tmp_path / "example.py").write_text(readme_script())
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    script = subprocess.Popen(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = script.communicate(timeout=600)
    assert script.returncode == 0, err
    for noise in ("Traceback", "RuntimeError", "ExperimentalWarning", "search helper"):
        assert noise not in err, err
    assert not OPTUNA_LOG.search(err), err
    assert re.fullmatch(r"\['\d'\]", out.strip()), out  # the class names it printed
    workers = {TrialRecord.of(t).worker or "" for t in demo_study(tmp_path).trials}
    pids = {worker.rsplit(":", 1)[-1] for worker in workers}
    assert str(script.pid) in pids and len(pids) >= 2, workers  # the caller and its helper


def test_an_api_search_shows_progress_only_when_asked_off_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not a terminal (a test, a log): quiet by default; `progress=True` prints the CLI's
    lines on stderr. Optuna's warnings and log stay quiet in the call, and its settings are
    the caller's again after it."""
    spec = automl_clf.load_spec(demo_layout(tmp_path))
    filters = list(warnings.filters)
    verbosity = optuna.logging.get_verbosity()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        automl_clf.search(spec, n_trials=1, jobs=1)
        quiet = capsys.readouterr()
        automl_clf.search(spec, n_trials=2, jobs=1, progress=True)
        shown = capsys.readouterr()
    assert quiet.out == quiet.err == ""
    assert shown.out == ""
    assert "study 'digits'" in shown.err and "#1 " in shown.err and "best" in shown.err
    assert not OPTUNA_LOG.search(shown.err)
    assert not [w for w in caught if issubclass(w.category, optuna.exceptions.ExperimentalWarning)]
    assert warnings.filters == filters and optuna.logging.get_verbosity() == verbosity


@pytest.mark.slow
def test_an_api_run_in_a_terminal_shows_progress_by_default(tmp_path: Path) -> None:
    """stderr a terminal (a pty): `run` shows the CLI's display without being asked."""
    demo_layout(tmp_path, n_trials=1)
    code = (
        "from automl_clf import load_spec, run\n"
        "run(load_spec('specs/digits.yaml'), export='exports/digits', jobs=1)\n"
    )
    master, terminal = pty.openpty()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    env["TERM"] = "xterm"
    script = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=terminal,
    )
    os.close(terminal)
    shown = b""
    with contextlib.suppress(OSError):  # EIO: the script has closed the terminal
        while chunk := os.read(master, 1 << 16):
            shown += chunk
    os.close(master)
    assert script.wait(timeout=600) == 0, shown.decode(errors="replace")
    text = shown.decode(errors="replace")
    assert "study 'digits'" in text and "complete" in text and "exported to" in text, text
