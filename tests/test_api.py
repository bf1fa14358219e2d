"""The public API (`from automl_clf import …`) and the README's Python examples, run as written
on tiny data laid out where they expect it (specs/digits.yaml, data/digits/)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

import automl_clf
from automl_clf.datasets import write_digits
from tests.conftest import REPO, tiny_spec, write_spec


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


@pytest.mark.slow
def test_the_readme_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """specs/digits.yaml stands for the demo's spec: 8 px images, two trials of two epochs."""
    write_digits(tmp_path / "data" / "digits", classes=[0, 1, 3], per_class=20)
    raw = tiny_spec(
        Path("../data/digits"),  # relative to the spec, as the demo's
        tmp_path,
        study={"name": "digits", "n_trials": 2},
        train={"epochs": 2},
        final={"tta": []},
    )
    del raw["study"]["storage"]  # the default: specs/studies/digits.db
    write_spec((tmp_path / "specs").mkdir() or tmp_path / "specs" / "digits.yaml", raw)
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
