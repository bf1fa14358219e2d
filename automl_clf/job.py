"""`autoclf run`: the whole job — search, final model, test, export — under one time budget.

What the user waits for is what the budget bounds, counted from the command's start (imports
included). The order of work:

1. Refuse an export folder that is foreign, a link or inside the data folder, and read the
   data (decoding it once into the cache).
2. With a budget: time a few training steps of the first trial's configuration
   (`probe_epoch_seconds`) and refuse, before any trial, a budget that cannot fit one epoch
   and the export, saying how much is needed.
3. Search until the search deadline (search/budget.py), which leaves the final step what the
   study's own measurements say it needs; trials cut by it keep their best epoch.
4. The final step, anytime under the same deadline (final/allowance.py): choose the members on
   validation (final/selection.py); retrain each when it still fits (`final.retrain: auto`),
   else — or when its retrain turns out unable to finish — export the trial's own best-epoch
   weights; test once; write the export, its optional parts (member 0's own test, test-time
   augmentation, TorchScript, ONNX, the report's figures) only as time allows, naming what was
   left out. What each part took is stored with the study (`StudyRecord.final_costs`), so the
   next run on this study plans with it instead of the priors.

With `final.audit_labels: true` the label audit (final/audit.py, as `autoclf audit` runs it)
comes first, after reading the data: a fixed `AUDIT_SHARE` of the budget, so the search plans
with what is left; without a budget it trains its folds in full. Its models are thrown away;
its findings become the "Label issues" section of the export's report.

Without a budget it is simply `search` then `best --export` in one command.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from numpy.typing import ArrayLike

from automl_clf.budget_plan import PROBE_SHARE, BudgetPlan, plan_budget, probe_with
from automl_clf.data.dataset import Dataset
from automl_clf.data.preprocess import Decoding
from automl_clf.errors import StudyError
from automl_clf.final.allowance import Allowance
from automl_clf.final.audit import AuditResult, OnFold, audit_labels
from automl_clf.final.export import ExportResult, write_export
from automl_clf.final.folder import check_export_folder
from automl_clf.final.plan import FinalPlanner
from automl_clf.final.retrain import FinalResult, OnProgress, RetrainProgress, retrain
from automl_clf.final.tta import n_tta_views
from automl_clf.machine import cpu_contention
from automl_clf.report.final import final_report
from automl_clf.report.trial import record_trial_report
from automl_clf.search.budget import (
    Budget,
    Clock,
    DataSizes,
    FinalEstimate,
    check_budget_covers_one_epoch,
    estimate_export_s,
    members_to_retrain,
)
from automl_clf.search.objective import SearchObserver
from automl_clf.search.record import StudyRecord, TrialRecord
from automl_clf.search.run import SearchResult, prepare_search, run_search
from automl_clf.search.storage import storage_faults
from automl_clf.search.study import load_existing_study, open_study, ranked_trials
from automl_clf.search.workers import default_jobs, threads_split
from automl_clf.spec.duration import format_duration
from automl_clf.spec.models import ResolvedSpec
from automl_clf.train.session import probe_epoch_seconds

AUDIT_SHARE = 0.2  # of the budget, for the label audit (final.audit_labels), before the search


@dataclass
class JobResult:
    search: SearchResult
    final: FinalResult
    export: ExportResult
    budget: Budget | None  # its phases hold the planned and actual split of the time
    retrained: int  # members retrained (best first); the others are as searched
    audit: AuditResult | None = None  # the label audit (final.audit_labels)


def run_job(
    spec: ResolvedSpec,
    export_dir: str | Path,
    *,
    n_trials: int | None = None,
    observer: SearchObserver | None = None,
    planned: Callable[[BudgetPlan], None] | None = None,
    final_started: Callable[[int, FinalEstimate | None], None] | None = None,
    on_final: OnProgress | None = None,
    on_audit: OnFold | None = None,
    force: bool = False,
    jobs: int | None = None,
    started: float | None = None,
    clock: Clock = time.monotonic,
    contention: Callable[[], float] = cpu_contention,
) -> JobResult:
    """Search, retrain (or not), test and export under `spec.study.budget`; see the module
    docstring.

    Args:
        observer: hears about the search (the CLI's live display).
        planned: told, before the first trial, what the budget buys and what
            `study.fit_budget` changed to make the spec fit it (budget_plan.py).
        final_started: told when the final step starts: how many members it retrains (best
            first), and its estimate.
        on_final: told how the final step goes: the retrain's epochs, the test, the export
            (final/retrain.py `RetrainProgress`).
        on_audit: told each fold of the label audit as it ends (final.audit_labels).
        jobs: trials at once during the search (search/workers.py; None: its default).
        started: the `clock` time the budget counts from (the command's start); default now.
        contention: measures the CPU contention (machine.py) as the job plans, before any
            worker starts (on a busy machine a retrain is not planned to gain from more
            threads), and as the final step starts (the export's priors are scaled by it).

    Raises:
        SpecError: the budget cannot fit one epoch and the export.
        ExportError: `export_dir` is a link, or not an autoclf export nor new or empty.
        OutputError: `export_dir` is inside the data folder.
        DataError, StudyError, StorageError: as `search` and `best --export` raise them.
    """
    out = check_export_folder(Path(export_dir), spec.data.root)  # before any work
    budget = None
    if spec.study.budget is not None:
        budget = Budget.start(spec.study.budget, clock, started)
    prepared = prepare_search(spec)  # device, data and backbones, once for the whole job
    dataset = prepared.dataset
    decoded = dataset.arrays(Decoding.of(spec.data))
    sizes = DataSizes(len(decoded["train"]), len(decoded["val"]), len(decoded["test"]))
    if budget is not None:
        budget.record("start", actual_s=budget.elapsed_s)
    audit = _audit(spec, dataset, budget, clock, on_audit) if spec.final.audit_labels else None
    plan = None
    contended = 1.0
    if budget is not None:
        plan_from = clock()
        contended = contention()
        spec, plan = _fit_budget(spec, dataset, sizes, budget, jobs)
        budget.record("plan", actual_s=clock() - plan_from)  # the probes and the fit
        if planned is not None:
            planned(plan)

    plan_final = FinalPlanner(
        spec.final,
        sizes,
        val_labels=tuple(int(y) for y in decoded["val"].labels),
        n_classes=dataset.n_classes,
        objective=spec.study.metric,
        direction=spec.study.resolved_direction,
        budget_s=budget.total_s if budget is not None else None,
        first_epoch_s=_first_epoch_s(plan),
        contention=contended,
    )
    search_from = clock()
    if budget is not None:
        planned_s = plan.search_s if plan is not None else budget.search_deadline - search_from
        budget.record("search", planned_s=planned_s)
    searched = run_search(
        spec,
        n_trials=n_trials,
        budget=budget,
        plan_final=plan_final if budget is not None else None,
        observer=observer,
        force=force,
        jobs=jobs,
        prepared=prepared,
        reporter=record_trial_report,
    )
    study = searched.study
    if budget is not None and searched.timed_out:  # the budget, not n_trials, ended it
        check_learned(study, decoded["val"].labels, budget, plan)
    estimate = plan_final(study)
    n_retrain = members_to_retrain(spec.final.retrain, estimate, budget, spec.final.ensemble)
    if budget is not None:
        budget.record("search", actual_s=clock() - search_from)
        budget.record("final", planned_s=estimate.with_margin(n_retrain))
    if final_started is not None:
        final_started(n_retrain, estimate)
    final_from = clock()
    costs = StudyRecord.of(study).final_costs or {}
    allowance = Allowance(None, clock)
    if budget is not None:
        pace = plan_final.retrain_pace(study)  # as the search's reserve planned it
        allowance = Allowance(
            budget.deadline, clock, costs, retrain_pace=pace, contention=contention()
        )
    final = retrain(spec, study, on_progress=on_final, allowance=allowance)
    if on_final is not None:
        on_final(RetrainProgress("export"))
    report = final_report(final, spec, study, audit)
    written = write_export(final, out, spec, report=report, allowance=allowance)
    StudyRecord(final_costs=_measured_costs(costs, allowance, len(final.members))).save(study)
    if budget is not None:
        budget.record("final", actual_s=clock() - final_from)
    retrained = sum(member.retrained for member in final.members)
    return JobResult(searched, final, written, budget, retrained, audit)


def check_learned(
    study: optuna.Study, val_labels: ArrayLike, budget: Budget, plan: BudgetPlan | None
) -> None:
    """Refuse to export, under a time budget, a model no better than chance.

    A budget can be long enough for the plan and still buy nothing: 128 px photos at 60 s on a
    busy machine fitted to 4 epochs at 32 px and exported a model that answered one class
    (0.16 on 6 classes). That is no model, so the job says so instead of exporting it: the
    best trial's validation accuracy must beat always answering the commonest class by more
    than one standard error of that rate on the validation split (a small split is noisy: a
    stricter test would refuse models that learned something).

    Raises:
        StudyError: naming both accuracies, what the budget bought and what to do.
    """
    ranked = ranked_trials(study) if len(study.directions) == 1 else []
    accuracy = TrialRecord.of(ranked[0]).val_accuracy if ranked else None
    labels = np.asarray(val_labels, dtype=np.int64)
    if accuracy is None or labels.size == 0:
        return  # nothing to judge: the final step says what is missing
    majority = float(np.bincount(labels).max() / labels.size)
    if accuracy > majority + math.sqrt(majority * (1.0 - majority) / labels.size):
        return
    bought = ""
    if plan is not None and plan.spec is not None:
        bought = (
            f" This budget bought trials of {plan.epochs} epoch(s) at "
            f"{plan.spec.data.image_size} px on this machine as it was"
            + (" (fitted to it: see the plan above)" if plan.changes else "")
            + "."
        )
    more = f"{math.ceil(3 * budget.total_s / 60)}m"
    raise StudyError(
        f"no usable model in {format_duration(budget.total_s)}: the best trial "
        f"(#{ranked[0].number}) scores {accuracy:.2f} on validation, no better than always "
        f"answering the commonest class ({majority:.2f}), so nothing was exported.{bought} "
        f"Give it more time in a new study, e.g. --time {more} --set "
        f"study.name={study.study_name}-longer (a rerun of this one resumes its space as "
        "fitted)"
    )


def _audit(
    spec: ResolvedSpec,
    dataset: Dataset,
    budget: Budget | None,
    clock: Clock,
    on_fold: OnFold | None,
) -> AuditResult:
    """The label audit in its `AUDIT_SHARE` of the budget (all the time it needs without)."""
    if budget is None:
        return audit_labels(spec, dataset=dataset, clock=clock, on_fold=on_fold)
    share_s = AUDIT_SHARE * budget.total_s
    result = audit_labels(
        spec,
        time_s=share_s,
        clock=clock,
        dataset=dataset,
        on_fold=on_fold,
        budget_share=AUDIT_SHARE,
    )
    budget.record("label audit", planned_s=share_s, actual_s=result.seconds)
    return result


def _measured_costs(
    before: dict[str, float], allowance: Allowance, members: int
) -> dict[str, float]:
    """What the next plan of this study calls each part of the final step: measured now where
    it ran (the test-time augmentation per view, the test per member), else as before."""
    costs = dict(before)
    for part, seconds in allowance.measured.items():
        if part == "retrain":
            continue
        costs[part] = round(seconds, 3)
    if "test" in allowance.measured:
        costs["test"] = round(allowance.measured["test"] / max(members, 1), 3)
    return costs


def _fit_budget(
    spec: ResolvedSpec, dataset: Dataset, sizes: DataSizes, budget: Budget, jobs: int | None
) -> tuple[ResolvedSpec, BudgetPlan]:
    """Probe the first trial's epoch time, fit the spec to the budget (budget_plan.py) and
    refuse, before any trial, a budget that cannot fit one epoch and the export; the probe is
    the budget's epoch estimate until trials measure their own. A new fit is stored with the
    study, created here with the fitted space, before any trial."""
    stored, new_study = _stored_fit(spec)
    workers = jobs if jobs is not None else default_jobs(timed=True)
    probe = probe_with(
        dataset, partial(probe_epoch_seconds, max_seconds=PROBE_SHARE * budget.total_s)
    )
    with threads_split(spec, workers):  # probed on a trial's share of the CPU, as it runs
        spec, plan = plan_budget(
            spec,
            dataset,
            sizes,
            budget,
            workers=workers,
            probe=probe,
            stored=stored,
            new_study=new_study,
        )
    first = plan.first_epoch_s
    if new_study and first is not None:
        # the final step retrains alone, on all of this process's threads (or one, if the
        # governor finds that faster): its pace is planned from both (final/plan.py)
        plan.first_alone_epoch_s = min(first, probe(spec, {})) if workers > 1 else first
    budget.epoch_estimate_s = plan.epoch_s
    views = n_tta_views(spec.final.tta) if spec.final.tta else 0
    export_s = estimate_export_s(None, members=1, tta_views=views, budget_s=budget.total_s)
    check_budget_covers_one_epoch(
        budget.total_s, elapsed_s=budget.elapsed_s, epoch_s=plan.epoch_s, export_s=export_s
    )
    if plan.overrides and not stored:
        with storage_faults(str(spec.study.storage)):
            opened = open_study(spec, dataset)
            StudyRecord(budget_fit=plan.overrides).save(opened.study)
    return spec, plan


def _first_epoch_s(plan: BudgetPlan | None) -> tuple[float, float] | None:
    """The probe's epoch of the new study's first trial, on a trial's share of the threads
    and on all of them (`FinalPlanner.first_epoch_s`); None when there is none."""
    if plan is None or plan.first_epoch_s is None or plan.first_alone_epoch_s is None:
        return None  # not a new study: its trial 0 ran in another run
    return plan.first_epoch_s, plan.first_alone_epoch_s


def _stored_fit(spec: ResolvedSpec) -> tuple[dict[str, Any] | None, bool]:
    """The fit an earlier run stored with this study, and whether the study is new (absent,
    or without a trial yet)."""
    try:
        study = load_existing_study(str(spec.study.storage), str(spec.study.name))
    except StudyError:
        return None, True
    return StudyRecord.of(study).budget_fit, not study.get_trials(deepcopy=False)
