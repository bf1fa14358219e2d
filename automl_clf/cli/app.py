"""The `autoclf` command line: the typer app, its `--version` and usage errors, the entry point
`main`, and the list of its commands, which live one module per group:

    cli/common.py            the option types and helpers the commands share (print, call the
                             API, load the spec, map errors to exit codes)
    cli/setup_commands.py    datasets, validate, init, schema, backbones
    cli/search_commands.py   search, status, dashboard
    cli/export_commands.py   best, run, audit
    cli/predict_commands.py  predict, visualize

A new command goes into its group's module and into `COMMANDS` below, which fixes the order
`autoclf --help` lists them in (the order a user meets them, not the modules').

Heavy imports (torch, timm, optuna, albumentations) happen inside the commands, so
`autoclf --help` is instant.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from automl_clf.cli import (
    common,
    export_commands,
    predict_commands,
    search_commands,
    setup_commands,
)
from automl_clf.cli.common import _console, _print_error


def _process_age_s() -> float:
    """Seconds since this process started (Linux's /proc), 0 where that cannot be read."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            now = float(uptime.read().split()[0])
        return max(0.0, now - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


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


COMMANDS = (
    setup_commands.datasets,
    setup_commands.validate,
    setup_commands.init,
    setup_commands.schema,
    setup_commands.backbones,
    search_commands.search,
    export_commands.best,
    export_commands.run,
    export_commands.audit,
    search_commands.status,
    predict_commands.predict,
    search_commands.dashboard,
    predict_commands.visualize,
)
for _command in COMMANDS:
    app.command()(_command)


def main() -> None:
    """The `autoclf` entry point. It leaves without tearing down the interpreter: unloading
    torch's and onnxruntime's libraries takes 1–2 s that the user (and a time budget) would
    wait for, after every file and database write has been completed and closed."""
    common.process_started = time.monotonic() - _process_age_s()
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
