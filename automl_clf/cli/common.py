"""What every command module of the CLI shares: the argument and option types, and the helpers
that print, call into the API, load the spec and map errors to exit codes (2: bad spec, data,
export, or a study storage to fix; 1: study problems; 130: interrupted).

The helpers keep their underscores: they are the cli room's own, not part of the Python API.
Each imports what it needs inside itself, so importing this module (and every command module,
which `autoclf --help` does) costs no more than typer.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from automl_clf.spec.models import ResolvedSpec

R = TypeVar("R")

# What `run --time` and `audit --time` count from: the process's start when `main` (cli/app.py)
# runs them (the interpreter and the imports the user waits for are inside the budget too),
# else the command's own start.
process_started: float | None = None

SpecPath = Annotated[
    Path,
    # A folder is let through to `_load`, which says how to write a spec for it.
    typer.Argument(exists=True, readable=True, help="The spec YAML file."),
]
StorageOption = Annotated[
    str | None,
    typer.Option(
        help="SQLAlchemy URL of the study storage (default: study.storage, else "
        "sqlite in the nearest studies/ folder)."
    ),
]
StudyNameOption = Annotated[
    str | None,
    typer.Option("--study-name", help="Study name (default: study.name, else the spec's stem)."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Override a spec value before validation, written as in the file (YAML), e.g. "
        "--set train.epochs=3 or --set 'train.lr={low: 1e-4, high: 1e-2, log: true}'; "
        "repeatable.",
    ),
]
DeviceOption = Annotated[
    str | None,
    typer.Option(
        help="Where to run: auto (CUDA when present), cpu, cuda or cuda:N (default: the spec's "
        "train.device; predict: cpu).",
    ),
]
ForceOption = Annotated[
    bool,
    typer.Option("--force", help="Resume the study even though its search space changed."),
]
JobsOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=64,
        help="Trials at once on this machine: processes on one study, CPU threads split "
        "between them (default: one per core under a time budget on a CPU, else 1).",
    ),
]


class ShowFormat(StrEnum):
    table = "table"
    json = "json"


FormatOption = Annotated[
    ShowFormat,
    typer.Option(
        "--format",
        help="table for people; json on stdout for scripts (messages go to stderr).",
    ),
]


def _console(stderr: bool = False) -> Console:
    """Rich output, unwrapped into a pipe (cli/console.py)."""
    from automl_clf.cli.console import output_console

    return output_console(stderr)


def _fail(exc: BaseException, code: int) -> typer.Exit:
    _print_error(str(exc))
    return typer.Exit(code)


def _print_error(message: str) -> None:
    """`error: …` on stderr, never wrapped; the message is shown as written (a path such as
    `data/[train]/` is not rich markup)."""
    from rich.markup import escape

    _console(stderr=True).print(f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True)


def _run(func: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """Call into the API; an AutoclfError becomes its message on stderr and its exit code."""
    from automl_clf.errors import AutoclfError

    try:
        return func(*args, **kwargs)
    except AutoclfError as exc:
        raise _fail(exc, exc.exit_code) from None


def _load(
    spec: Path,
    sets: list[str] | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    budget: str | None = None,
    device: str | None = None,
) -> ResolvedSpec:
    """The spec of a command that works on its study (all that take a SPEC), with its `--set`
    overrides. Each command calls it before its own imports, and it imports nothing heavy before
    the spec's structure is checked, so a mistake in the spec is printed in a fraction of a
    second rather than after seconds of importing torch and timm. Optuna is quieted here, per
    command, not at import (autoclf prints its own progress) nor in the app callback, which
    runs before a command's --help, and importing the search room takes seconds."""
    import warnings

    from rich.markup import escape

    from automl_clf.spec.load import load_spec, parse_override
    from automl_clf.versions import RenamedKeyWarning

    if spec.is_dir():
        raise _fail(ValueError(_folder_for_spec(spec)), 2)
    overrides = dict(_run(parse_override, text) for text in sets or ())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RenamedKeyWarning)
        loaded = _run(
            load_spec,
            spec,
            overrides=overrides,
            storage=storage,
            study_name=study_name,
            budget=budget,
            device=_device(device),
        )
    for warning in caught:  # a renamed key: one line on stderr, as autoclf's other warnings
        if issubclass(warning.category, RenamedKeyWarning):
            _console(stderr=True).print(
                f"[yellow]warning[/yellow]: {escape(str(warning.message))}"
            )
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    from automl_clf.search.optuna_compat import quiet_optuna

    quiet_optuna()
    return loaded


def _device(value: str | None) -> str | None:
    """--device, checked for its form (one line and exit 2 when it names no device); whether
    this machine has it is checked before the first trial."""
    from automl_clf.spec.config import check_device_name

    try:
        return value if value is None else check_device_name(value)
    except ValueError as exc:
        raise _fail(ValueError(f"--device: {exc}"), 2) from None


def _folder_for_spec(folder: Path) -> str:
    """What to do when SPEC is a folder: pass a spec it holds, or write one for its images."""
    specs = sorted(p.name for p in folder.glob("*.y*ml") if p.is_file())
    held = f" (it holds {', '.join(specs[:3])}: pass one of those)" if specs else ""
    return (
        f"{folder} is a folder, not a spec file{held}; to write a spec for the images in it: "
        f"autoclf init {folder}"
    )


@contextlib.contextmanager
def _study_storage(loaded: ResolvedSpec) -> Iterator[None]:
    """Reading the study: a storage that fails underneath (a damaged database, a read-only
    folder) is its one-line StorageError and exit 2, not a traceback from SQLAlchemy."""
    from automl_clf.errors import StorageError
    from automl_clf.search.storage import storage_faults

    try:
        with storage_faults(loaded.study.storage):
            yield
    except StorageError as exc:
        raise _fail(exc, exc.exit_code) from None


INTERRUPTED_SEARCH = (
    "a running trial is recorded as FAIL (interrupted) and will be retried first; rerun the "
    "same command to resume"
)


@contextlib.contextmanager
def _interrupts_exit_130(what: str = INTERRUPTED_SEARCH) -> Iterator[None]:
    """Ctrl-C or SIGTERM at any moment of the command (the imports, reading the data, a trial)
    ends it with exit code 130 and one line, saying `what` became of the work. run_search
    handles the signals itself (a second one exits at once); outside it, SIGTERM acts as
    Ctrl-C does."""
    try:
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    except ValueError:  # not the main thread (an embedding host): leave signals alone
        previous = None
    try:
        yield
    except KeyboardInterrupt:
        _console().print(f"[yellow]interrupted[/yellow]: {what}")
        raise typer.Exit(130) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _print_json(data: Any) -> None:
    """One JSON document on stdout (NaN is already null: search/summary.py)."""
    import json

    sys.stdout.write(json.dumps(data, indent=2) + "\n")
