"""The commands on an export: `predict` (classify images, optionally with Grad-CAM heatmaps)
and `visualize` (a network's filters and feature maps for one image).

Registered on the app, in the order `autoclf --help` lists them, by cli/app.py.
"""

from __future__ import annotations

import dataclasses
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from automl_clf.cli.common import DeviceOption, _console, _device, _fail, _run

if TYPE_CHECKING:
    from automl_clf.final.predictor import FilePrediction, Predictor


class OutputFormat(StrEnum):
    csv = "csv"
    json = "json"


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
