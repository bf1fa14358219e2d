"""The commands that come before a search: `datasets` (a bundled data set as an image folder),
`validate` (a spec and its data checked), `init` (a spec written for a folder), `schema` (the
spec's JSON Schema or reference page) and `backbones` (the names a spec can use).

Registered on the app, in the order `autoclf --help` lists them, by cli/app.py.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from automl_clf.cli.common import SetOption, SpecPath, _console, _fail, _load, _run


class DatasetName(StrEnum):
    digits = "digits"


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
