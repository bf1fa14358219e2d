"""The `autoclf` command line, the room that talks to people:

    cli/app.py       the typer app: parse arguments, call the API, print, map errors to exit
                     codes
    cli/tables.py    the summary tables and lines (study, space, data report, final result)
    cli/progress.py  the live displays of a search and of the final step

Nothing below this room prints; it reports through return values, records and the
`SearchObserver` / `on_progress` hooks these displays implement.
"""

from automl_clf.cli.app import app, is_loopback, main

__all__ = ["app", "is_loopback", "main"]
