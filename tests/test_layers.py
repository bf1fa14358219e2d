"""The layering (pyproject.toml [tool.importlinter], docs/architecture.md) holds: import-linter's
own check on the package, and proof that the contract catches an import against the flow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import automl_clf

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path, package_parent: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the contract in `cwd`'s pyproject.toml, on the package found first
    under `package_parent` (grimp reads the source statically: nothing is imported)."""
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_package_keeps_its_layers() -> None:
    done = lint_imports(ROOT, ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


def test_an_import_against_the_flow_breaks_the_contract(tmp_path: Path) -> None:
    """A copy of the package in which the spec (a low layer) imports the CLI (the top one)."""
    package = Path(automl_clf.__file__).parent
    shutil.copytree(package, tmp_path / "automl_clf", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    fields = tmp_path / "automl_clf" / "spec" / "fields.py"
    fields.write_text(
        fields.read_text() + "\n\ndef _late() -> None:\n    import automl_clf.cli.app\n"
    )
    done = lint_imports(tmp_path, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "0 kept, 1 broken" in done.stdout
    assert "automl_clf.spec is not allowed to import automl_clf.cli" in done.stdout
    assert "automl_clf.spec.fields -> automl_clf.cli.app" in done.stdout


def test_every_top_level_module_is_in_a_layer() -> None:
    """A new room or top-level module must be placed in the contract, or nothing checks it."""
    import pkgutil
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = config["contracts"][0]["layers"]
    placed = {name.strip() for layer in layers for name in layer.replace(":", "|").split("|")}
    package = Path(automl_clf.__file__).parent
    present = {module.name for module in pkgutil.iter_modules([str(package)])}
    assert present - placed == set(), "put these in pyproject.toml's layers"
    assert placed - present == set(), "these layers name no module"
