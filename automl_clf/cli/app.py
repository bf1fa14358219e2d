"""The `autoclf` command line: parse arguments, call the API, print with rich, map errors to exit
codes (2: bad spec, data, export, or a study storage to fix; 1: study problems; 130:
interrupted).

Heavy imports (torch, timm, optuna, albumentations) happen inside the commands, so
`autoclf --help` is instant.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

R = TypeVar("R")


def _process_age_s() -> float:
    """Seconds since this process started (Linux's /proc), 0 where that cannot be read."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            now = float(uptime.read().split()[0])
        return max(0.0, now - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


# What `run --time` counts from: the process's start when `main` runs it (the interpreter and
# the imports the user waits for are inside the budget too), else the command's own start.
_process_started: float | None = None

if TYPE_CHECKING:
    from rich.console import Console

    from automl_clf.final.predictor import FilePrediction, Predictor
    from automl_clf.spec.models import ResolvedSpec


def _flowed(text: str | None) -> str | None:
    """A docstring with each paragraph on one line, for rich to wrap at the terminal's width:
    rich keeps a help text's line breaks, so the source's 99-column lines broke sentences in
    the middle at 80 and 120 columns. List items (`- `) and click's `\\b` paragraphs keep
    their lines."""
    if text is None:
        return None
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(
        p if p.startswith("\b") else re.sub(r"\n(?!\s*[-*] )\s*", " ", p) for p in paragraphs
    )


def _plain_flags(params: list[Any]) -> list[Any]:
    """A flag's help shows no `<bool>`: it takes no value, and `--force <bool>` made
    `--force true` look valid (typer shows every parameter's type)."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
    return params


class _Command(TyperCommand):
    """Every autoclf command: help paragraphs flowed, flags without a type (see above)."""

    def __init__(self, *args: Any, help: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, help=_flowed(help), **kwargs)

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_flags(super().get_params(ctx))


class _Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_flags(super().get_params(ctx))

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Typer's own usage errors (an unknown option, a missing file, a bad choice) as one
        line on stderr and exit 2, like autoclf's errors: typer draws them in a box, which in a
        log wraps at 80 columns and splits the message."""

        def call() -> Any:
            return super(_Group, self).main(
                args, prog_name, complete_var, False, windows_expand_args, **extra
            )

        if not standalone_mode:
            return call()
        try:
            code = call()
        except typer.TyperException as exc:  # click's ClickException and UsageError
            if type(exc).__name__ != "NoArgsIsHelpError":  # the help is already printed
                _print_usage_error(exc)
            sys.exit(exc.exit_code)
        except typer.Abort:
            _console(stderr=True).print("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _print_usage_error(exc: typer.TyperException) -> None:
    ctx = getattr(exc, "ctx", None)
    message = exc.format_message().rstrip(".")
    if ctx is not None:
        message += f" (see {ctx.command_path} -h)"
    _print_error(message)


class _App(typer.Typer):
    """The typer app whose commands are `_Command`s, so a command added later gets the same
    habits without remembering them."""

    def command(self, name: str | None = None, *, cls: Any = None, **kwargs: Any) -> Any:
        return super().command(name, cls=cls or _Command, **kwargs)


app = _App(
    name="autoclf",
    help="Declarative hyperparameter search for CNN image classifiers.",
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

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


def _print_version(value: bool) -> None:
    if value:
        from automl_clf.versions import __version__, formats_read

        typer.echo(f"autoclf {__version__}\nreads {formats_read()}")
        raise typer.Exit()


@app.callback()
def _setup(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print the version and the versions of the formats it reads (spec, trial "
            "config, model.json, export marker), and exit.",
        ),
    ] = False,
) -> None:
    """Images between Pillow's pixel limit and twice it are decoded quietly (autoclf only shrinks
    them to image_size), so Pillow's `DecompressionBombWarning` is not printed; larger ones are
    refused by the decoding itself and listed like corrupt files."""
    import warnings

    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


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


class DatasetName(StrEnum):
    digits = "digits"


@app.command()
def datasets(
    name: Annotated[DatasetName, typer.Argument(help="Which bundled data set.")],
    folder: Annotated[Path, typer.Argument(help="Where to write <folder>/<class>/<n>.png.")],
    classes: Annotated[
        str | None,
        typer.Option(help="Only these classes, comma-separated, e.g. 0,1,2,3,4."),
    ] = None,
) -> None:
    """Write a bundled real data set as an image folder (digits: scikit-learn's 1,797 digits)."""
    from automl_clf.datasets import write_digits

    wanted = None
    if classes is not None:
        try:
            wanted = [int(c) for c in classes.split(",") if c.strip()]
        except ValueError:
            message = f"--classes takes digits like 0,1,2, got {classes!r}"
            raise _fail(ValueError(message), 2) from None
        if not wanted or not set(wanted) <= set(range(10)):
            raise _fail(ValueError(f"--classes takes digits 0 to 9, got {classes!r}"), 2)
    root = write_digits(folder, classes=wanted)
    n = sum(1 for _ in root.rglob("*.png"))
    _console().print(f"wrote {n} images of {name.value} to {root}/<class>/")


@app.command()
def validate(spec: SpecPath, sets: SetOption = None) -> None:
    """Check a spec and its data: print the data report and the search space.

    The report lists classes, images per split, skipped files, duplicates across splits,
    clusters of near-duplicate images (those across splits first) and imbalance; nothing is
    trained. Nothing is written either, unless the data cache folder
    exists already: then the decoded images go into it, as a search would put them. The device
    must be on this machine, and every backbone must build for the images, with its pretrained
    weights (downloaded into the Hugging Face cache if missing, as a search would).
    """
    loaded = _load(spec, sets)

    from automl_clf.cli.tables import print_data_report, print_warnings, space_table, study_lines
    from automl_clf.data.dataset import check_dataset
    from automl_clf.data.preprocess import Decoding
    from automl_clf.models.factory import check_backbones
    from automl_clf.search.samplers import search_warnings
    from automl_clf.search.storage import storage_scheme
    from automl_clf.spec.describe import describe_space
    from automl_clf.train.device import resolve_device

    _run(storage_scheme, loaded.study.storage)  # a study storage autoclf can open and lock
    _run(resolve_device, loaded.train.device)
    dataset = _run(check_dataset, loaded.data, Decoding.of(loaded.data))  # creates no folder
    _run(check_backbones, loaded)
    console = _console()
    console.print(f"[green]spec OK[/green]: {spec}")
    console.print(f"study {loaded.study.name!r} in {loaded.study.storage}")
    print_data_report(console, dataset)
    console.print(space_table(describe_space(loaded)))
    for line in study_lines(loaded):
        console.print(line)
    print_warnings(console, search_warnings(loaded))


@app.command()
def init(
    data: Annotated[
        Path,
        typer.Argument(
            help="The image folder (<class>/<image>, or train/, val/, test/ of those), or a CSV "
            "manifest (path,label[,split])."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Where to write the spec (default: <folder name>.yaml here)."
        ),
    ] = None,
    time_budget: Annotated[
        str,
        typer.Option("--time", help="The whole job's time budget (study.budget), e.g. 15m, 2h."),
    ] = "15m",
    force: Annotated[bool, typer.Option("--force", help="Replace the spec if it exists.")] = False,
) -> None:
    """Write a commented spec for a folder of images, ready for `autoclf run`.

    Reads the layout, classes and counts, and a few hundred image headers (size, colour), then
    chooses the image size, channels, split, backbones that fit that size, class weighting for
    imbalance, and a search that fits --time. Each choice is explained in a comment.
    """
    from automl_clf.data.profile import describe_counts
    from automl_clf.scaffold import init_spec

    result = _run(init_spec, data, output, time=time_budget, force=force)
    choices, console = result.choices, _console()
    console.print(
        f"wrote {result.path} for {data}: {describe_counts(result.profile)}; image_size "
        f"{choices.image_size}, {choices.channels} channel(s), backbones "
        f"{', '.join(choices.backbones)}, budget {choices.budget}"
    )
    for note in result.notes:
        console.print(f"[yellow]note[/yellow]: {note}")
    console.print(f"next: autoclf validate {result.path}, then autoclf run {result.path}")


@app.command()
def schema(
    markdown: Annotated[
        bool,
        typer.Option(
            "--markdown", help="Print the reference page (docs/spec-reference.md) instead."
        ),
    ] = False,
) -> None:
    """Print the spec's JSON Schema, every field described (for editor completion)."""
    if markdown:
        from automl_clf.spec.reference import spec_reference_markdown

        sys.stdout.write(spec_reference_markdown())
    else:
        from automl_clf.spec.schema import json_text

        sys.stdout.write(json_text())


@app.command()
def backbones(
    pattern: Annotated[str, typer.Argument(help="Shell-style pattern, e.g. 'resnet*'.")] = "*",
    pretrained: Annotated[
        bool,
        typer.Option(
            "--pretrained",
            help="List timm's pretrained weights instead, as <model>.<tag> (a backbone name; "
            "timm/<model>.<tag> is its Hugging Face Hub repository).",
        ),
    ] = False,
) -> None:
    """List the backbones a spec can name: `cnn` and timm models matching PATTERN."""
    from automl_clf.spec.backbones import list_backbones

    names = list_backbones(pattern, pretrained=pretrained)
    if not names:
        raise _fail(ValueError(f"no backbone matches {pattern!r}; try a wider pattern"), 1)
    for name in names:
        typer.echo(name)


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


@app.command()
@_interrupts_exit_130()
def search(
    spec: SpecPath,
    n_trials: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Finished trials the study should hold in total "
            "(default: study.n_trials); a larger number extends the study.",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=1,
            help="Wall-clock seconds for this command: no trial starts unless an epoch still "
            "fits, and the running trial stops at it, keeping its best finished epoch.",
        ),
    ] = None,
    storage: StorageOption = None,
    study_name: StudyNameOption = None,
    force: ForceOption = False,
    jobs: JobsOption = None,
    sets: SetOption = None,
    device: DeviceOption = None,
) -> None:
    """Create or resume the spec's study and run trials until it holds n_trials finished ones.

    Rerunning the same command resumes the study; several commands (processes or machines) on
    one storage share it, and n_trials counts across all of them. Ctrl-C ends the running
    trial as FAIL (interrupted) and the next run retries it first; a second Ctrl-C exits at
    once.
    """
    loaded = _load(spec, sets, storage, study_name, device=device)  # before the heavy imports

    from automl_clf.cli.progress import search_with_display

    _run(
        search_with_display,
        _console(),
        loaded,
        n_trials=n_trials,
        timeout=timeout,
        force=force,
        jobs=jobs,
    )


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


@app.command()
@_interrupts_exit_130(
    "nothing was exported, and --export's folder is as it was; rerun the same command to export"
)
def best(
    spec: SpecPath,
    export: Annotated[
        Path | None,
        typer.Option(help="Retrain the best configuration, test it, and write the export here."),
    ] = None,
    trial: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Export this complete trial instead of the best (a multi-objective study: "
            "one from its Pareto front).",
        ),
    ] = None,
    storage: StorageOption = None,
    study_name: StudyNameOption = None,
    sets: SetOption = None,
    output_format: FormatOption = ShowFormat.table,
    device: DeviceOption = None,
) -> None:
    """Show the best trial, or a multi-objective study's Pareto front; --export retrains one.

    With --export, retrain the best trial (or --trial N), evaluate it once on the test split and
    write the export.

    With --format json, stdout is one JSON object: the study, its trials by state, best_trial
    (or pareto_front), and with --export an export object (folder, report, test metrics,
    formats).
    """
    loaded = _load(spec, sets, storage, study_name, device=device)

    from automl_clf.cli.tables import pareto_table, study_counts, trial_table
    from automl_clf.search.study import best_trial, load_existing_study, pareto_front
    from automl_clf.search.summary import best_summary

    as_json = output_format == ShowFormat.json
    study = _run(load_existing_study, loaded.study.storage, loaded.study.name)
    console = _console(stderr=as_json)
    objectives = loaded.study.objectives
    summary: dict[str, Any] = {}
    with _study_storage(loaded):
        if as_json:
            summary = _run(best_summary, study, objectives)
        elif len(study.directions) > 1:
            console.print(f"study {study.study_name!r}: {study_counts(study)}")
            console.print(pareto_table(pareto_front(study), objectives))
        else:
            console.print(f"study {study.study_name!r}: {study_counts(study)}")
            console.print(trial_table(_run(best_trial, study), loaded.study.metric))
        if len(study.directions) > 1 and export is not None and trial is None:
            _run(best_trial, study)  # says: pick one from the front with --trial N
    if export is not None:
        summary["export"] = _export(console, loaded, study, export, trial)
    if as_json:
        _print_json(summary)


def _export(
    console: Console, loaded: ResolvedSpec, study: Any, export: Path, trial: int | None
) -> dict[str, Any]:
    """`best --export`: retrain (or not), test and write the export, printing what it does;
    returns what `--format json` says of it."""
    from automl_clf.cli.progress import FinalProgress
    from automl_clf.cli.tables import final_summary, formats_summary
    from automl_clf.final.export import write_export
    from automl_clf.final.folder import check_export_folder
    from automl_clf.final.retrain import RetrainProgress, retrain
    from automl_clf.report.final import calibration_change, final_report

    _run(check_export_folder, export, loaded.data.root)  # before the retrain, not after it
    final_spec = loaded.final
    members = f"the top {final_spec.ensemble} trials" if final_spec.ensemble > 1 else "the trial"
    if final_spec.retrain == "never":
        doing = f"loading {members}' best-epoch weights (not retraining)"
    else:
        seeds = f" with {final_spec.seeds} seeds" if final_spec.seeds > 1 else ""
        doing = f"retraining {members} on {final_spec.train_on}{seeds}"
    console.print(f"final model: {doing}")
    with FinalProgress(console) as progress:
        final = _run(retrain, loaded, study, trial, on_progress=progress)
        progress(RetrainProgress("export"))
        report = final_report(final, loaded, study)
        written = _run(write_export, final, export, loaded, report=report)
    console.print(final_summary(final))
    console.print(formats_summary(written))
    console.print(
        f"exported to {written.folder}\nreport: {written.report / 'index.html'} "
        f"(and report.md beside it)"
    )
    test = final.test
    return {
        "folder": str(written.folder),
        "report": str(written.report),
        "trials": [member.trial.number for member in final.members],
        "test": {
            "accuracy": test.accuracy,
            "balanced_accuracy": test.balanced_accuracy,
            "macro_f1": test.macro_f1,
            "log_loss": test.loss,
        },
        "formats": {name: check.model_dump() for name, check in written.formats.items()},
        "latency_ms": written.latency_ms,
        # the test split's before and after temperature scaling (T 1: not calibrated)
        "calibration": dataclasses.asdict(calibration_change(final)),
    }


def _print_json(data: Any) -> None:
    """One JSON document on stdout (NaN is already null: search/summary.py)."""
    import json

    sys.stdout.write(json.dumps(data, indent=2) + "\n")


@app.command()
@_interrupts_exit_130()
def run(
    spec: SpecPath,
    time_budget: Annotated[
        str | None,
        typer.Option(
            "--time",
            help="The whole job's wall-clock budget, e.g. 90s, 15m, 2h (default: "
            "study.budget; none: search study.n_trials, then export).",
        ),
    ] = None,
    export: Annotated[
        Path | None,
        typer.Option(help="Where to write the export (default: exports/<study name>)."),
    ] = None,
    n_trials: Annotated[
        int | None,
        typer.Option(
            min=1, help="Cap the finished trials (default: study.n_trials, none with a budget)."
        ),
    ] = None,
    storage: StorageOption = None,
    study_name: StudyNameOption = None,
    force: ForceOption = False,
    jobs: JobsOption = None,
    sets: SetOption = None,
    device: DeviceOption = None,
) -> None:
    """Search, retrain the best configuration, test it once and export it: the whole job.

    With --time, everything you wait for fits in it: the search stops when what is left is
    what the final retrain and export need (estimated from the study's own measurements), and
    the final model is the best trial's own weights when a retrain no longer fits. Rerunning
    resumes the study with a fresh budget.
    """
    loaded = _load(spec, sets, storage, study_name, time_budget, device)  # before heavy imports

    from automl_clf.cli.progress import job_with_display

    out = export if export is not None else Path("exports") / str(loaded.study.name)
    _run(
        job_with_display,
        _console(),
        loaded,
        out,
        n_trials=n_trials,
        force=force,
        jobs=jobs,
        started=_process_started,
    )


@app.command()
@_interrupts_exit_130("the label audit wrote nothing; rerun the same command to audit again")
def audit(
    spec: SpecPath,
    time_budget: Annotated[
        str,
        typer.Option(
            "--time",
            help="The audit's wall-clock budget, e.g. 90s, 10m, 1h: it fits its folds and "
            "epochs to it, and ends by then with what it has.",
        ),
    ] = "10m",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for label_issues.csv and the report (default: audits/<study name>); "
            "never inside the data folder."
        ),
    ] = None,
    folds: Annotated[int, typer.Option(min=2, max=20, help="K of the K-fold cross-fitting.")] = 5,
    storage: StorageOption = None,
    study_name: StudyNameOption = None,
    sets: SetOption = None,
    device: DeviceOption = None,
) -> None:
    """Look for mislabelled images: cross-fitted probabilities, then confident learning.

    Every labelled image (train, val and test) gets an out-of-sample probability from K models
    of the study's best configuration (the spec's defaults before a search), each trained on
    the other folds; cleanlab's confident learning flags the images whose given label those
    models doubt. They are listed in label_issues.csv, most likely mislabelled first, with a
    report (report.md, and index.html with thumbnails). Nothing in the data folder is changed,
    and the audit's models are thrown away, so auditing the test split does not touch the
    final model's evaluation.
    """
    loaded = _load(spec, sets, storage, study_name, device=device)

    from automl_clf.spec.duration import format_duration, parse_duration

    time_s = _run(parse_duration, time_budget)
    folder = out if out is not None else Path("audits") / str(loaded.study.name)

    from automl_clf.cli.tables import fold_line, label_issues_table
    from automl_clf.final.audit import audit_labels, check_out_folder
    from automl_clf.report.write import write_audit_report

    _run(check_out_folder, folder, loaded.data)  # before any work
    console = _console()
    console.print(
        f"label audit of {loaded.data.root or loaded.data.manifest}: {folds}-fold "
        f"cross-fitting within {format_duration(time_s)}, output to {folder}"
    )
    result = _run(
        audit_labels,
        loaded,
        time_s=time_s,
        folds=folds,
        reserve_s=AUDIT_REPORT_S,
        started=_process_started,
        on_fold=lambda fold: console.print(fold_line(fold)),
    )
    console.print(f"cross-fitted {result.source}")
    for note in result.notes:
        console.print(f"[yellow]note[/yellow]: {note}")
    if result.issues:
        console.print(label_issues_table(result))
    written = write_audit_report(result, folder, str(loaded.study.name))
    console.print(
        f"{len(result.issues)} of {result.n_audited} audited images look mislabelled "
        f"({len(result.paths) - result.n_audited} not audited); nothing was changed\n"
        f"wrote {written['csv']}\nreport: {written['html']} (and report.md beside it)"
    )


AUDIT_REPORT_S = 5.0  # seconds `audit` keeps inside --time for the CSV, figure and pages


@app.command()
def status(
    spec: SpecPath,
    storage: StorageOption = None,
    study_name: StudyNameOption = None,
    sets: SetOption = None,
    output_format: FormatOption = ShowFormat.table,
) -> None:
    """Show the study's trials by state and per worker, the running ones and why any failed.

    A trial a time budget stopped after an epoch is "cut at the deadline", not pruned: it keeps
    its best epoch and counts as a usable result, as complete trials do.

    With --format json, stdout is one JSON object: trials by state, usable, workers, running,
    failed, and best_trial (null until there is one) or pareto_front.
    """
    loaded = _load(spec, sets, storage, study_name)

    from automl_clf.cli.tables import best_line, status_tables
    from automl_clf.search.study import load_existing_study
    from automl_clf.search.summary import status_summary

    study = _run(load_existing_study, loaded.study.storage, loaded.study.name)
    if output_format == ShowFormat.json:
        with _study_storage(loaded):
            summary = status_summary(study, loaded.study.objectives)
        _print_json(summary)
        return
    console = _console()
    console.print(f"study {study.study_name!r} in {loaded.study.storage}")
    with _study_storage(loaded):
        for table in status_tables(study):
            if table.row_count:
                console.print(table)
        console.print(best_line(study, loaded.study.objectives))


class OutputFormat(StrEnum):
    csv = "csv"
    json = "json"


@app.command()
def predict(
    export_dir: Annotated[
        Path, typer.Argument(exists=True, file_okay=False, help="An export directory.")
    ],
    images: Annotated[list[Path], typer.Argument(help="Image files and/or folders (recursive).")],
    top_k: Annotated[int, typer.Option(min=1, help="Also list the K most probable classes.")] = 1,
    output_format: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.csv,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", dir_okay=False, help="Write here instead of stdout."),
    ] = None,
    device: DeviceOption = None,
    min_confidence: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Answer `unsure` when the top probability is below this (default: the "
            "export's final.min_confidence; 0: always a class).",
        ),
    ] = None,
    explain: Annotated[
        Path | None,
        typer.Option(
            "--explain",
            file_okay=False,
            help="Also write where the model looked in each image (a Grad-CAM heatmap over "
            "the image, one PNG per image) into this folder, outside the export.",
        ),
    ] = None,
) -> None:
    """Classify images with an exported model, using exactly its training-time preprocessing.

    Probabilities are calibrated (the export's temperature). `predicted` is `unsure` below the
    minimum confidence; `top_class` is the most probable class either way. `ood` is true when
    the top probability is below that of all but a few percent of the validation images (the
    export's out-of-distribution threshold): an image unlike the training data, or one the
    model cannot place. Unreadable files are reported in an `error` column and do not stop the
    others.

    A progress bar (on stderr) shows for more than one batch (256) of images.

    --explain OUT_DIR writes OUT_DIR/<image name>.png for each readable image and
    OUT_DIR/heatmaps.csv (which image each PNG shows); a model with no layer to explain gets a
    note instead, and its predictions stand.
    """
    from rich.progress import MofNCompleteColumn, Progress, TimeRemainingColumn

    from automl_clf.final.predictor import BATCH_SIZE, iter_image_files, load, predict_files

    not_found = [str(p) for p in images if not (p.exists() or p.is_symlink())]
    if not_found:
        message = f"no such file or folder: {', '.join(not_found)}; check the path"
        raise _fail(ValueError(f"{message} (predict reads image files and folders)"), 2)
    from automl_clf.outputs import check_outside

    for option, path, example in (
        ("--output", output, "-o predictions.csv"),
        ("--explain", explain, "--explain heatmaps"),
    ):
        if path is not None:
            _run(check_outside, path, option, export=export_dir, example=example)
    predictor = _run(load, export_dir, device=_device(device) or "cpu")
    n_classes = len(predictor.classes_)
    if top_k > n_classes:
        message = f"--top-k {top_k} is more than the model's {n_classes} classes"
        raise _fail(ValueError(f"{message}; use --top-k {n_classes} or less"), 2)
    files = iter_image_files(images)
    if not files:
        raise _fail(ValueError("no image files found in the given paths"), 2)
    progress = Progress(
        *Progress.get_default_columns()[:-1],
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=_console(stderr=True),
        transient=True,
        disable=len(files) <= BATCH_SIZE,
    )
    with progress:
        task = progress.add_task("predicting", total=len(files))
        rows = predict_files(
            predictor,
            files,
            top_k=top_k,
            on_batch=lambda n: progress.advance(task, n),
            min_confidence=min_confidence,
        )
    text = _format_rows(rows, output_format, top_k)
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            output.write_text(text)
        except OSError as exc:
            raise _fail(ValueError(f"cannot write --output {output}: {exc.strerror}"), 2) from None
        _console(stderr=True).print(f"wrote {len(rows)} prediction(s) to {output}")
    failed = [r for r in rows if r.error]
    if explain is not None:
        _write_heatmaps(predictor, [r.path for r in rows if not r.error], explain)
    if failed:
        _console(stderr=True).print(
            f"[yellow]{len(failed)} of {len(rows)} file(s) could not be read[/yellow]"
        )
        if len(failed) == len(rows):
            raise typer.Exit(1)


def _write_heatmaps(predictor: Predictor, images: list[Path], out_dir: Path) -> None:
    """`predict --explain`: the heatmap PNGs, and on stderr what was written or why not."""
    from rich.markup import escape

    from automl_clf.report.heatmaps import write_heatmaps

    console = _console(stderr=True)
    try:
        written = write_heatmaps(predictor, images, out_dir)
    except OSError as exc:
        raise _fail(ValueError(f"cannot write --explain {out_dir}: {exc}"), 1) from None
    for note in written.notes:
        console.print(f"[yellow]{escape(note)}[/yellow]", soft_wrap=True)
    if written.files:
        console.print(f"wrote {len(written.files)} heatmap(s) to {escape(str(out_dir))}")


def _format_rows(rows: list[FilePrediction], output_format: OutputFormat, top_k: int) -> str:
    import io
    import json

    from automl_clf.outputs import csv_writer

    if output_format == OutputFormat.json:
        records = [dataclasses.asdict(row) | {"path": str(row.path)} for row in rows]
        return json.dumps(records, indent=2) + "\n"
    buffer = io.StringIO()
    writer = csv_writer(buffer, lineterminator="\n")
    header = ["path", "predicted", "probability", "top_class"]
    if top_k > 1:
        header.append("top_k")
    writer.writerow([*header, "ood", "error"])
    for row in rows:
        probability = f"{row.probability:.6f}" if row.probability is not None else ""
        values = [str(row.path), row.predicted or "", probability, row.top_class or ""]
        if top_k > 1:
            values.append(";".join(f"{c}:{p:.4f}" for c, p in row.top_k))
        ood = "" if row.ood is None else str(row.ood).lower()
        writer.writerow([*values, ood, row.error or ""])
    return buffer.getvalue()


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps a server on this machine (a host name other than
    localhost may resolve to anything, so it does not count)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def dashboard(
    spec: SpecPath,
    host: Annotated[
        str, typer.Option(help="Address to listen on; the default keeps it on this machine.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    storage: StorageOption = None,
    study_name: StudyNameOption = None,
    sets: SetOption = None,
) -> None:
    """Serve optuna-dashboard on the study: trials, plots, notes and confusion matrices.

    Each complete trial shows its per-class validation metrics and confusion matrix.

    Listens on 127.0.0.1 unless --host says otherwise: the dashboard can delete studies.

    It has no login, so binding any other address prints a warning. Ctrl-C stops it.
    """
    loaded = _load(spec, sets, storage, study_name)

    from automl_clf.search.storage import open_storage
    from automl_clf.search.study import load_existing_study

    _run(load_existing_study, loaded.study.storage, loaded.study.name)
    from optuna_dashboard import run_server

    from automl_clf.report.trial import artifact_store

    console = _console(stderr=True)
    if not is_loopback(host):
        console.print(
            f"[bold yellow]warning:[/bold yellow] listening on {host}: anyone who can reach "
            "this machine can read the study and delete it (optuna-dashboard has no login); "
            "use --host 127.0.0.1 and an SSH tunnel unless the network is trusted"
        )
    shown = f"[{host}]" if ":" in host else host
    console.print(
        f"optuna-dashboard for study {loaded.study.name!r} ({loaded.study.storage}) at "
        f"http://{shown}:{port}/dashboard/ — Ctrl-C stops it"
    )
    try:
        run_server(
            open_storage(loaded.study.storage),
            host=host,
            port=port,
            artifact_store=artifact_store(loaded.study.artifacts),
        )
    except OSError as exc:
        reason = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        raise _fail(ValueError(f"{reason}; choose another --port (or --host)"), 1) from None
    except KeyboardInterrupt:
        console.print("dashboard stopped")


@app.command()
def visualize(
    export_dir: Annotated[
        Path, typer.Argument(exists=True, file_okay=False, help="An export directory.")
    ],
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="One image file.")],
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the PNGs (default: ./visualize/<image name>)."),
    ] = None,
) -> None:
    """Draw the first convolution's filters and the feature maps at each stage for IMAGE.

    The PNGs go to ./visualize/<image name>/ (letters, digits, - and _ of the name; others
    become _) unless --out says otherwise: never into the export folder, which stays exactly
    what the export wrote (a later export to it refuses a folder with files it did not write),
    so --out inside it, or the default when run from inside it, is refused.
    """
    from automl_clf.final.predictor import load
    from automl_clf.outputs import check_outside, safe_stem
    from automl_clf.report.network import write_network_figures

    stem = safe_stem(image)
    folder = out or Path("visualize") / stem
    option = "--out" if out is not None else "the default --out"
    example = f"--out ~/visualize/{stem}"
    _run(check_outside, folder, option, export=export_dir, example=example)
    predictor = _run(load, export_dir)
    pixels = _run(predictor.load, image)
    figures = write_network_figures(
        predictor.model_, predictor.manifest_.preprocessing, predictor.classes_, pixels, folder
    )
    console = _console()
    console.print(
        f"{image}: predicted {figures.predicted!r} ({figures.probability:.3f}) by "
        f"{predictor.manifest_.architecture}"
    )
    for note in figures.notes:
        console.print(f"[yellow]{note}[/yellow]")
    for path in figures.files:
        console.print(f"wrote {path}")


def main() -> None:
    """The `autoclf` entry point. It leaves without tearing down the interpreter: unloading
    torch's and onnxruntime's libraries takes 1–2 s that the user (and a time budget) would
    wait for, after every file and database write has been completed and closed."""
    global _process_started
    _process_started = time.monotonic() - _process_age_s()
    try:
        app()
        code: Any = 0
    except SystemExit as exc:
        code = exc.code
    sys.stdout.flush()
    sys.stderr.flush()
    if code is None:
        code = 0
    elif not isinstance(code, int):  # a message, as sys.exit("…") gives
        print(code, file=sys.stderr, flush=True)
        code = 1
    os._exit(code)
