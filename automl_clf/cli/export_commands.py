"""The commands that make a final model from a study, or judge its data: `best` (show the best
trial; --export retrains, tests and exports it), `run` (search, then export: the whole job
under one time budget) and `audit` (look for mislabelled images with the study's best
configuration).

Registered on the app, in the order `autoclf --help` lists them, by cli/app.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from automl_clf.cli import common
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
    _interrupts_exit_130,
    _load,
    _print_json,
    _run,
    _study_storage,
)

if TYPE_CHECKING:
    from rich.console import Console

    from automl_clf.spec.models import ResolvedSpec


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
        started=common.process_started,
    )


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
        started=common.process_started,
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
