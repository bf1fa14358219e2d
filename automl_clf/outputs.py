"""What every command that writes files obeys: where an output may go, what a name made from an
input file may be, and what a CSV cell may hold.

Where. No output lands inside a folder the command reads: not the export folder (it stays
exactly what the export wrote, or the next `best --export` there refuses it, and `predict -o
EXP/model.json` would destroy the model it reads), not the data folder (a new folder there is
read as a class by the next run). `check_outside` refuses such a path before any work, links
resolved, and says what to give instead.

Names. A file or folder named after an input image (`visualize`'s folder, `predict --explain`'s
PNGs) keeps letters, digits, - and _ only, so a stem such as `..` cannot leave the folder the
command names (`safe_stem`).

CSV cells. A spreadsheet runs a cell that begins with = + - @ (or a tab or carriage return) as a
formula, and file and class names are the user's, or whoever wrote the data set's manifest:
every text cell of every CSV autoclf writes goes through `csv_writer`, which prefixes such a
cell with ' (OWASP's rule against CSV injection); a spreadsheet shows the quote and a script can
strip it. Numbers are written as they are. JSON outputs keep names exact.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from automl_clf.errors import OutputError

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_WHY = {
    "export": "an export folder holds only what the export wrote (a later `best --export` "
    "there refuses anything else, and a file written over the model breaks it)",
    "data": "a file or folder written there would be read as data by the next run",
}


def safe_cell(text: str) -> str:
    """`text` as a spreadsheet shows it without running it (module docstring)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class SafeCsvWriter:
    """`csv.writer` whose text cells pass through `safe_cell`; numbers are written as given."""

    def __init__(self, handle: IO[str], **options: Any) -> None:
        self._writer = csv.writer(handle, **options)

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow([safe_cell(c) if isinstance(c, str) else c for c in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(handle: IO[str], **options: Any) -> SafeCsvWriter:
    """The writer of every CSV autoclf writes (module docstring); `options` as csv.writer's."""
    return SafeCsvWriter(handle, **options)


def safe_name(name: str) -> str:
    """`name` with every character but letters, digits, - and _ replaced by _: a file name
    that stays in its folder."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def safe_stem(path: Path) -> str:
    """The stem of `path` as a file name that stays in its folder (`..` becomes `__`)."""
    return safe_name(path.stem) or "_"


def check_outside(
    path: Path,
    option: str,
    *,
    export: Path | None = None,
    data: Path | None = None,
    example: str,
) -> None:
    """Refuse `path`, an output given as `option`, when it is inside (or is) the `export` or
    `data` folder the command reads; links are resolved, so no link leads around the rule.

    Raises:
        OutputError: naming the path, the folder, why, and `example` of what to give instead.
    """
    target = path.resolve()
    for role, folder in (("export", export), ("data", data)):
        if folder is not None and target.is_relative_to(folder.resolve()):
            raise OutputError(
                f"{option} {path} is inside the {role} folder {folder}, and autoclf never "
                f"writes there: {_WHY[role]}; write outside it, e.g. {example}"
            )
