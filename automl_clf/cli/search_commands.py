"""The commands on a study: `search` (create or resume it and run trials), `status` (its
trials by state and worker) and `dashboard` (optuna-dashboard on it).

Registered on the app, in the order `autoclf --help` lists them, by cli/app.py.
"""

from __future__ import annotations

from typing import Annotated

import typer

from automl_clf.cli.common import (
    DeviceOption,
    ForceOption,
    FormatOption,
    JobsOption,
    SetOption,
    ShowFormat,
    SpecPath,
    StorageOption,
    StudyNameOption,
    _console,
    _fail,
    _interrupts_exit_130,
    _load,
    _print_json,
    _run,
    _study_storage,
)


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
