"""The `autoclf` command line, the room that talks to people:

    cli/app.py               the typer app, `--version`, usage errors, `main`, and the list of
                             commands in the order `autoclf --help` shows them
    cli/common.py            what the commands share: option types; print, call the API, load
                             the spec, map errors to exit codes
    cli/setup_commands.py    datasets, validate, init, schema, backbones
    cli/search_commands.py   search, status, dashboard
    cli/export_commands.py   best, run, audit
    cli/predict_commands.py  predict, visualize
    cli/tables.py            the summary tables and lines (study, space, data report, final result)
    cli/progress.py          the live displays of a search and of the final step

Nothing below this room prints; it reports through return values, records and the
`SearchObserver` / `on_progress` hooks these displays implement.
"""

from automl_clf.cli.app import app, main
from automl_clf.cli.search_commands import is_loopback

__all__ = ["app", "is_loopback", "main"]
