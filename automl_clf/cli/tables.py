"""Rich rendering for the CLI: the summary tables and lines (the live displays: progress.py)."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from automl_clf.data.dataset import Dataset
from automl_clf.data.near_duplicates import shown_path
from automl_clf.search.record import (
    CUT_AT_DEADLINE,
    STATES,
    USABLE,
    TrialRecord,
    count_states,
    counts_text,
    n_usable,
    state_name,
    trial_state,
)
from automl_clf.search.study import fail_reason, ranked_trials, trial_value
from automl_clf.spec.describe import SpaceDescription
from automl_clf.spec.duration import format_duration
from automl_clf.spec.models import Spec

if TYPE_CHECKING:
    from automl_clf.budget_plan import BudgetPlan
    from automl_clf.final.audit import AuditResult, FoldRun
    from automl_clf.final.export import ExportResult
    from automl_clf.final.retrain import FinalResult
    from automl_clf.search.budget import Budget, FinalEstimate
    from automl_clf.train.metrics import EvalResult

STATE_STYLE = {  # by trial_state (search/record.py)
    "complete": "green",
    CUT_AT_DEADLINE: "green",
    "pruned": "yellow",
    "fail": "red",
    "running": "cyan",
    "waiting": "blue",
}
SUMMARY_ATTRS = (  # TrialRecord fields, shown under their names
    "val_loss",
    "val_accuracy",
    "val_macro_f1",
    "best_epoch",
    "epochs_run",
    "n_params",
)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_params(params: dict[str, Any]) -> str:
    """`backbone=cnn lr=0.0032 …`: param names without their section, values short."""
    return " ".join(f"{name.rsplit('.', 1)[-1]}={format_value(v)}" for name, v in params.items())


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
    print_near_duplicates(console, dataset, max_listed=max_listed)
    print_warnings(console, dataset.warnings())


def print_near_duplicates(console: Console, dataset: Dataset, *, max_listed: int = 20) -> None:
    """The clusters of near-duplicate images, those straddling splits first, each file with
    the split it was in before `data.near_duplicates: group` moved any."""
    near = dataset.near_duplicates
    if near is None:
        console.print("near-duplicates: not looked for (data.near_duplicates: off)")
        return
    if not near.clusters:
        console.print(
            f"near-duplicates: none ({near.n_candidates} pair(s) of similar hashes, none alike "
            "on the pixels)"
        )
        return
    straddling = near.straddling
    style = "yellow" if straddling else "default"
    when = " before the move" if near.n_moved else ""
    console.print(
        f"[{style}]{len(near.clusters)} cluster(s) of near-duplicate images[/{style}] "
        f"({near.n_files} images; {len(straddling)} straddled splits, "
        f"{len(near.leaks())} pair(s) across splits{when}):"
    )
    ordered = sorted(near.clusters, key=lambda c: not c.straddles)  # stable: by first file
    for cluster in ordered[:max_listed]:
        files = ", ".join(
            f"{split or 'dropped'}: {shown_path(path, dataset.root)}"
            for path, split in zip(cluster.files, cluster.splits, strict=True)
        )
        console.print(f"  {files}")
    if len(ordered) > max_listed:
        console.print(f"  … and {len(ordered) - max_listed} more")
    if near.n_moved:
        console.print(
            f"  moved {near.n_moved} image(s) into the split of their cluster's first file "
            "(data.near_duplicates: group); the counts above are after the move"
        )


def print_warnings(console: Console, warnings: list[str]) -> None:
    """Things that are valid but probably not what was meant, one line each."""
    for warning in warnings:
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
    """A single-objective study's best trial: its state, value (a trial the deadline cut: its
    best epoch's), metrics and params."""
    table = Table(title=f"Best trial #{trial.number}", title_justify="left", show_header=False)
    table.add_column("key")
    table.add_column("value")
    table.add_row("state", state_name(trial))
    table.add_row(objective, format_value(trial_value(trial)))
    record = TrialRecord.of(trial)
    for key in SUMMARY_ATTRS:
        value = getattr(record, key)
        if value is not None and key != objective:
            table.add_row(key, format_value(value))
    for name, value in trial.params.items():
        table.add_row(name, format_value(value))
    return table


def study_counts(study: optuna.Study) -> str:
    """`3 complete, 1 cut at the deadline, 2 pruned`."""
    return counts_text(count_states(study.get_trials(deepcopy=False)))


def _unless_complete(trial: FrozenTrial) -> str:
    """` (cut at the deadline)` after a trial's number, nothing for a complete one."""
    return "" if trial_state(trial) == "complete" else f" ({state_name(trial)})"


def final_summary(final: FinalResult) -> str:
    """The final model's test result (an ensemble's beside its best member alone), TTA beside
    it, the spread over seeds, and where the final model differs from what the spec asked."""
    from automl_clf.report.tables import weights_source

    def scores(result: EvalResult, bold: bool = False) -> str:
        accuracy = f"[bold]{result.accuracy:.4f}[/bold]" if bold else f"{result.accuracy:.4f}"
        return (
            f"accuracy {accuracy}, balanced accuracy {result.balanced_accuracy:.4f}, macro F1 "
            f"{result.macro_f1:.4f}, log loss {result.loss:.4f}"
        )

    test, first = final.test, final.first
    source = weights_source(first.trial.number, first.retrained, first.train_on, first.epochs)
    if final.is_ensemble:
        numbers = ", ".join(f"#{m.trial.number}" for m in final.members)
        n_retrained = sum(m.retrained for m in final.members)
        if n_retrained == 0:
            how = "not retrained"
        elif n_retrained == len(final.members):
            how = f"each retrained on {first.train_on}"
        else:  # final.retrain auto under a budget: the best that fitted
            how = f"the best {n_retrained} retrained on {first.train_on}, the rest as searched"
        mix = "mean of probabilities"
        if final.selection is not None:
            shares = [w for w in final.selection.weights if w > 0]
            mix = f"probabilities weighted {'/'.join(f'{w:.2f}' for w in shares)}"
        lines = [
            f"ensemble of {len(final.members)} (trials {numbers}, {mix}, {how}): "
            f"test {scores(test, bold=True)} ({len(test.labels)} test images)"
        ]
        if final.test_single is not None:
            lines.append(f"trial #{first.trial.number} alone: test {scores(final.test_single)}")
    else:
        lines = [
            f"test {scores(test, bold=True)} ({len(test.labels)} test images; trial "
            f"#{first.trial.number}, {source})"
        ]
    if final.test_tta is not None:
        lines.append(
            f"with test-time augmentation ({' + '.join(final.tta)}): {scores(final.test_tta)}"
        )
    measured = [run for run in first.seed_runs if run.val is not None]
    if len(measured) > 1:
        losses = [run.val.loss for run in measured if run.val is not None]
        accuracies = [run.val.accuracy for run in measured if run.val is not None]
        lines.append(
            f"{len(measured)} seeds: val loss {statistics.mean(losses):.4f} ± "
            f"{statistics.pstdev(losses):.4f}, val accuracy {statistics.mean(accuracies):.4f} ± "
            f"{statistics.pstdev(accuracies):.4f}; exported seed {first.seed} (best on val)"
        )
    if final.calibration is not None:
        from automl_clf.report.final import calibration_change

        change = calibration_change(final)
        lines.append(
            f"calibrated: logits / T = {change.temperature:.3g} (fitted on validation); test "
            f"calibration error {change.ece_before:.4f} → {change.ece_after:.4f}, log loss "
            f"{change.log_loss_before:.4f} → {change.log_loss_after:.4f}"
        )
    lines += [f"[yellow]note[/yellow]: {note}" for note in final.notes]
    if final.skipped:
        lines.append(
            "[yellow]left out to keep the time budget[/yellow]: " + "; ".join(final.skipped)
        )
    return "\n".join(lines)


def budget_plan_lines(plan: BudgetPlan, sampler: str) -> list[str]:
    """What the budget buys, before the first trial, and what study.fit_budget changed."""
    from automl_clf.budget_plan import MIN_TRIALS

    lines = [
        f"plan: {format_duration(max(plan.search_s, 0))} of search, {plan.workers} trial(s) at "
        f"once, an epoch about {format_duration(plan.epoch_s)} here: about {plan.trials} "
        f"complete trial(s) of up to {plan.epochs} epochs (pruned ones end sooner)"
    ]
    if plan.leaves_startup is True:
        lines.append(
            f"{sampler} draws its first {plan.startup} trials at random, then models the rest"
        )
    elif plan.leaves_startup is False:
        lines.append(
            f"[yellow]note[/yellow]: {sampler} draws its first {plan.startup} trials at random: "
            "at this pace every trial will be random (more time, or a smaller spec, helps)"
        )
    if plan.changes:
        how = (
            "as when this study was first fitted to its budget"
            if plan.refitted
            else "fitted to the budget (study.fit_budget: auto; off keeps the spec as written)"
        )
        lines.append(f"{how}: " + "; ".join(plan.changes))
    elif plan.trials < MIN_TRIALS:
        lines.append(
            f"[yellow]note[/yellow]: about {plan.trials} complete trial(s) is few for a search; "
            "a new study with study.fit_budget: auto shrinks the spec to fit, or give more time"
        )
    return lines


def final_plan_line(spec: Spec, retrains: int, estimate: FinalEstimate | None) -> str:
    """What the final step will do (how many members it retrains), and what it should take."""
    members = spec.final.ensemble
    if retrains == 0 and spec.final.retrain == "auto":
        what = "the trial's own best-epoch weights, unless a retrain still fits when it gets there"
    elif retrains == 0:
        what = "the trial's own best-epoch weights (not retrained)"
    elif retrains >= members:
        what = f"retraining on {spec.final.train_on}"
    else:
        what = f"retraining the best {retrains} on {spec.final.train_on}, the rest as searched"
    if members > 1:
        what = f"up to {members} trials weighed on the validation split, {what}"
    expected = ""
    if estimate is not None:
        expected = f" (about {format_duration(estimate.with_margin(retrains))})"
    return f"final model: {what}{expected}"


def budget_table(budget: Budget) -> Table:
    """The time budget as planned and as spent, per phase."""
    table = Table(title=f"time budget {format_duration(budget.total_s)}", title_justify="left")
    for column in ("phase", "planned", "actual"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for phase in budget.phases:
        table.add_row(
            phase.name,
            "" if phase.planned_s is None else format_duration(phase.planned_s),
            "" if phase.actual_s is None else format_duration(phase.actual_s),
        )
    spent = budget.elapsed_s
    share = f"{spent / budget.total_s:.0%} of the budget"
    table.add_row(
        "[bold]total[/bold]",
        format_duration(budget.total_s),
        f"{format_duration(spent)} ({share})",
    )
    return table


def formats_summary(export: ExportResult) -> str:
    """One line per extra format: its parity with the eager model, or why it is missing."""
    latency = export.latency
    lines = [
        f"CPU latency {latency.ms:.2f} ms per image (eager, batch 1, {latency.threads} "
        "thread(s), as the trials')"
    ]
    for name, check in export.formats.items():
        if check.ok:
            lines.append(
                f"[green]✓[/green] {name} {check.file}: max |Δ logit| {check.max_abs_diff:.2g} "
                f"on {check.n_images} test images"
            )
        else:
            lines.append(f"[yellow]✗ {name} {check.file} not usable[/yellow]: {check.error}")
    return "\n".join(lines)


def pareto_table(front: list[FrozenTrial], objectives: tuple[str, ...]) -> Table:
    """The Pareto front of a multi-objective study: one row per trial, by number."""
    table = Table(
        title=f"Pareto front: {len(front)} trial(s); export one with --export DIR --trial N",
        title_justify="left",
    )
    table.add_column("trial", justify="right")
    for name in objectives:
        table.add_column(name, justify="right")
    table.add_column("params")
    for trial in front:
        values = [format_value(v) for v in trial.values]
        number = f"#{trial.number}{_unless_complete(trial)}"
        table.add_row(number, *values, format_params(trial.params))
    return table


def status_tables(study: optuna.Study) -> list[Table]:
    """`autoclf status`: trials by state (and how many are usable results), then per worker,
    then the running ones."""
    trials = study.get_trials(deepcopy=False)
    counts = count_states(trials)
    usable = n_usable(counts)
    by_state = Table(
        title=f"Study {study.study_name!r}: {len(trials)} trials, {usable} usable ({USABLE})",
        title_justify="left",
    )
    for state in counts:
        by_state.add_column(STATES[state], justify="right")
    by_state.add_row(*(str(n) for n in counts.values()))

    per_worker = Table(title="Per worker", title_justify="left")
    per_worker.add_column("worker")
    shown = [s for s in STATES if s != "waiting"]
    for state in shown:
        per_worker.add_column(STATES[state], justify="right")
    per_worker.add_column("last trial started")
    workers: dict[str, list[FrozenTrial]] = {}
    for trial in trials:
        if trial.state != TrialState.WAITING:
            workers.setdefault(_worker(trial), []).append(trial)
    for worker, own in sorted(workers.items()):
        starts = [t.datetime_start for t in own if t.datetime_start is not None]
        last = max(starts).strftime("%Y-%m-%d %H:%M:%S") if starts else "-"
        own_counts = count_states(own)
        per_worker.add_row(worker, *(str(own_counts[s]) for s in shown), last)

    running = Table(title="Running trials", title_justify="left")
    for column in ("trial", "worker", "started", "epochs reported", "params"):
        running.add_column(column)
    for trial in trials:
        if trial.state == TrialState.RUNNING:
            started = trial.datetime_start.strftime("%H:%M:%S") if trial.datetime_start else "-"
            running.add_row(
                f"#{trial.number}",
                _worker(trial),
                started,
                str(len(trial.intermediate_values)),
                format_params(trial.params),
            )
    failed = Table(title="Failed trials", title_justify="left")
    failed.add_column("trial")
    failed.add_column("reason")
    for trial in trials:
        if trial.state == TrialState.FAIL:
            failed.add_row(f"#{trial.number}", fail_reason(trial))
    return [by_state, per_worker, running, failed]


def _worker(trial: FrozenTrial) -> str:
    worker = TrialRecord.of(trial).worker
    return "?" if worker is None else worker


def best_line(study: optuna.Study, objectives: tuple[str, ...]) -> str:
    """`best trial #3: val_loss 0.2134` (the best usable trial: complete or cut at the deadline,
    as `best` ranks them), or the Pareto front's size for several objectives."""
    if len(study.directions) > 1:
        front = study.best_trials
        numbers = ", ".join(f"#{t.number}" for t in sorted(front, key=lambda t: t.number))
        return f"Pareto front: {len(front)} trial(s) {numbers}".rstrip()
    ranked = ranked_trials(study)
    if not ranked:
        return f"no usable trial yet ({USABLE}, within study.constraints)"
    best = ranked[0]
    value = format_value(trial_value(best))
    return f"best trial #{best.number}{_unless_complete(best)}: {objectives[0]} {value}"


def _settings(model: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in model.model_dump().items() if k != "kind")


def study_lines(spec: Spec) -> list[str]:
    """`autoclf validate`: how the study will search (objectives, sampler, pruner, budgets)."""
    study = spec.study
    goals = ", ".join(
        f"{n} ({d})" for n, d in zip(study.objectives, study.directions, strict=True)
    )
    sampler: Any = study.sampler
    pruner: Any = study.effective_pruner
    lines = [
        f"objective: {goals}",
        f"sampler: {sampler.kind} ({_settings(sampler) or 'defaults'}), seed {study.seed}",
    ]
    if study.is_multi_objective:
        lines.append(
            "pruner: none — Optuna cannot prune multi-objective studies; every trial trains to "
            "its epoch cap or early stop (to prune, optimise one objective and limit the others "
            "with study.constraints: max_params, max_latency_ms)"
        )
    else:
        lines.append(
            f"pruner: {pruner.kind} ({_settings(pruner) or 'off'}), on {study.metric} each epoch"
        )
    limits = study.constraints.limits()
    if limits:
        lines.append("constraints: " + ", ".join(f"{k} <= {v:g}" for k, v in limits.items()))
    first = (["the defaults"] if study.try_defaults and not sampler.enumerates_space else []) + (
        [f"{len(study.warm_start)} warm-start configuration(s)"] if study.warm_start else []
    )
    if first:
        lines.append("tried first: " + " then ".join(first))
    cap = study.trial_cap  # none under a time budget that does not give n_trials
    trials = f"{cap} finished trials across all workers" if cap else "as many trials as fit"
    budget = f"budget: {trials}, {spec.train.epochs} epochs per trial at most"
    if study.budget is not None:
        budget += f", {study.budget:g} s for the whole job (autoclf run)"
    if study.timeout is not None:
        budget += f", {study.timeout:g} s per command"
    lines.append(budget)
    return lines


N_ISSUES_SHOWN = 10  # label issues printed by `autoclf audit` (the CSV holds them all)


def fold_line(fold: FoldRun) -> str:
    """One fold of the label audit as it ended."""
    what = f"label audit: fold {fold.number}/{fold.of} ({fold.n_images} images held out)"
    if fold.state == "done":
        return f"{what}: predicted in {format_duration(fold.seconds)}"
    if fold.state == "cut":
        return f"[yellow]{what}: cut by the time budget, its images are not audited[/yellow]"
    return f"[yellow]{what}: no time left to start it, its images are not audited[/yellow]"


def label_issues_table(audit: AuditResult, n: int = N_ISSUES_SHOWN) -> Table:
    """The `n` images most likely mislabelled, as label_issues.csv ranks them."""
    from automl_clf.report.audit import confidence_text

    shown = min(n, len(audit.issues))
    table = Table(
        title=f"the {shown} most likely mislabelled of {len(audit.issues)} flagged",
        title_justify="left",
    )
    for column in ("rank", "file", "split", "given", "suggested", "self-confidence"):
        table.add_column(
            column, justify="right" if column in ("rank", "self-confidence") else "left"
        )
    for issue in audit.issues[:n]:
        table.add_row(
            str(issue.rank),
            escape(str(issue.path)),  # the user's names are shown as written, never as markup
            issue.split,
            escape(issue.given),
            escape(issue.suggested),
            confidence_text(issue.self_confidence),
        )
    return table
