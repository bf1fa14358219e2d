"""The rich console autoclf prints on: the CLI's, and the Python API's progress (on stderr)."""

from __future__ import annotations

import os

from rich.console import Console

PIPED_WIDTH = 10_000  # columns of output that is not a terminal: a log line is never wrapped


def output_console(stderr: bool = False) -> Console:
    """Rich output; into a pipe or a file (a log), lines are not wrapped at 80 columns, so a
    trial's parameters stay one line that grep finds (COLUMNS, when set, still rules)."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPED_WIDTH
    return console
