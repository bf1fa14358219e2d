"""Rich rendering for the CLI: the live search display and the summary tables."""

from __future__ import annotations

import contextlib
import math
import statistics
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from automl_clf.data.dataset import Dataset
from automl_clf.spec.describe import SpaceDescription
from automl_clf.train.trainer import EpochResult

if TYPE_CHECKING:
    from automl_clf.final.export import ExportResult
    from automl_clf.final.retrain import FinalResult

STATE_STYLE = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red", "RUNNING": "cyan"}


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_params(params: dict[str, Any]) -> str:
    """`backbone=cnn lr=0.0032 …`: param names without their section, values short."""
    return " ".join(f"{name.rsplit('.', 1)[-1]}={format_value(v)}" for name, v in params.items())


class SearchProgress:
    """A `SearchObserver`: a line per finished trial above bars for the study and the trial."""

    def __init__(self, console: Console, *, target: int) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.study_task = self.progress.add_task("finished trials", total=target)
        self.trial_task = self.progress.add_task("trial", total=1, visible=False)

    def __enter__(self) -> SearchProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def search_started(self, n_finished: int, target: int) -> None:
        self.progress.update(self.study_task, completed=n_finished, total=target)

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        self.progress.update(
            self.trial_task, description=f"trial #{number} epochs", completed=0, visible=True
        )

    def epoch_done(self, number: int, epoch: EpochResult, max_epochs: int) -> None:
        val = epoch.val
        metrics = f"val loss {val.loss:.4f} acc {val.accuracy:.3f}" if val is not None else ""
        self.progress.update(
            self.trial_task,
            description=f"trial #{number} epoch {epoch.epoch}: {metrics}",
            completed=epoch.epoch,
            total=max_epochs,
        )

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        state = trial.state.name
        attrs = trial.user_attrs
        if trial.state == TrialState.FAIL:
            detail = f"[red]{attrs.get('fail_reason', 'failed')}[/red]"
        else:
            detail = (
                f"val loss {attrs.get('val_loss', math.nan):.4f} "
                f"acc {attrs.get('val_accuracy', math.nan):.3f} "
                f"({attrs.get('epochs_run', '?')} ep, {attrs.get('train_seconds', 0):.1f}s)"
            )
        best = ""
        with contextlib.suppress(ValueError):
            best = f"  best #{study.best_trial.number} {study.best_value:.4g}"
        style = STATE_STYLE.get(state, "white")
        self.console.print(
            f"#{trial.number:<3} [{style}]{state:<8}[/{style}] {detail}{best}\n"
            f"     [dim]{format_params(trial.params)}[/dim]"
        )
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            self.progress.advance(self.study_task)
        self.progress.update(self.trial_task, visible=False)


def space_table(space: SpaceDescription) -> Table:
    table = Table(title=f"Search space: {space.size_text}", title_justify="left")
    for column in ("parameter", "kind", "values", "only when"):
        table.add_column(column)
    for p in space.params:
        table.add_row(p.name, p.kind, p.detail, p.condition or "-")
    return table


def print_data_report(console: Console, dataset: Dataset, *, max_listed: int = 20) -> None:
    """Classes and counts per split, skipped files with reasons, duplicates, warnings."""
    layout = "pre-split" if dataset.presplit else "split by autoclf"
    source = dataset.spec.manifest or dataset.root
    console.print(f"data {source} ({layout}, fingerprint {dataset.fingerprint[:16]})")
    console.print(counts_table(dataset.classes, dataset.counts()))
    if dataset.skipped:
        console.print(f"[yellow]{len(dataset.skipped)} file(s) skipped[/yellow]:")
        for skipped in dataset.skipped[:max_listed]:
            console.print(f"  {skipped.path}: {skipped.reason}")
        if len(dataset.skipped) > max_listed:
            console.print(f"  … and {len(dataset.skipped) - max_listed} more")
    if dataset.duplicates:
        console.print(
            f"[yellow]{len(dataset.duplicates)} image(s) in more than one split[/yellow]:"
        )
        for group in dataset.duplicates[:max_listed]:
            where = "; ".join(
                f"{s}: {', '.join(p.name for p in ps)}" for s, ps in group.paths.items()
            )
            console.print(f"  {where}")
    for warning in dataset.warnings():
        console.print(f"[yellow]warning[/yellow]: {warning}")


def counts_table(classes: list[str], counts: dict[str, list[int]]) -> Table:
    table = Table(title=f"{len(classes)} classes", title_justify="left")
    table.add_column("class")
    for split in counts:
        table.add_column(split, justify="right")
    for i, name in enumerate(classes):
        table.add_row(name, *(str(c[i]) for c in counts.values()))
    table.add_row("[bold]total[/bold]", *(f"[bold]{sum(c)}[/bold]" for c in counts.values()))
    return table


def trial_table(trial: FrozenTrial, objective: str) -> Table:
    table = Table(title=f"Best trial #{trial.number}", title_justify="left", show_header=False)
    table.add_column("key")
    table.add_column("value")
    table.add_row(objective, format_value(trial.value))
    for key in (
        "val_loss",
        "val_accuracy",
        "val_macro_f1",
        "best_epoch",
        "epochs_run",
        "n_params",
    ):
        if key in trial.user_attrs and key != objective:
            table.add_row(key, format_value(trial.user_attrs[key]))
    for name, value in trial.params.items():
        table.add_row(name, format_value(value))
    return table


def study_counts(study: optuna.Study) -> str:
    counts = {state: 0 for state in TrialState}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state] += 1
    return ", ".join(f"{n} {s.name.lower()}" for s, n in counts.items() if n) or "no trials"


def final_summary(final: FinalResult) -> str:
    """The retrained model's test result, TTA beside it, and the spread over seeds."""
    test = final.test
    lines = [
        f"test accuracy [bold]{test.accuracy:.4f}[/bold], balanced accuracy "
        f"{test.balanced_accuracy:.4f}, macro F1 {test.macro_f1:.4f}, log loss {test.loss:.4f} "
        f"({len(test.labels)} test images; trial #{final.trial.number}, {final.epochs} epochs "
        f"on {final.train_on})"
    ]
    if final.test_tta is not None:
        tta = final.test_tta
        lines.append(
            f"with test-time augmentation ({' + '.join(final.tta)}): accuracy {tta.accuracy:.4f}, "
            f"balanced accuracy {tta.balanced_accuracy:.4f}, macro F1 {tta.macro_f1:.4f}, "
            f"log loss {tta.loss:.4f}"
        )
    measured = [run for run in final.seed_runs if run.val is not None]
    if len(measured) > 1:
        losses = [run.val.loss for run in measured if run.val is not None]
        accuracies = [run.val.accuracy for run in measured if run.val is not None]
        lines.append(
            f"{len(measured)} seeds: val loss {statistics.mean(losses):.4f} ± "
            f"{statistics.pstdev(losses):.4f}, val accuracy {statistics.mean(accuracies):.4f} ± "
            f"{statistics.pstdev(accuracies):.4f}; exported seed {final.seed} (best on val)"
        )
    return "\n".join(lines)


def formats_summary(export: ExportResult) -> str:
    """One line per extra format: its parity with the eager model, or why it is missing."""
    lines = [f"CPU latency {export.latency_ms:.2f} ms per image (eager, batch 1)"]
    for name, check in export.formats.items():
        if check.ok:
            lines.append(
                f"[green]✓[/green] {name} {check.file}: max |Δ logit| {check.max_abs_diff:.2g} "
                f"on {check.n_images} test images"
            )
        else:
            lines.append(f"[yellow]✗ {name} {check.file} not usable[/yellow]: {check.error}")
    return "\n".join(lines)
