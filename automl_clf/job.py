"""`autoclf run`: the whole job — search, final model, test, export — under one time budget.

What the user waits for is what the budget bounds, counted from the command's start (imports
included). The order of work:

1. Refuse a foreign export folder and read the data (decoding it once into the cache).
2. With a budget: time a few training steps of the first trial's configuration
   (`probe_epoch_seconds`) and refuse, before any trial, a budget that cannot fit one epoch
   and the export, saying how much is needed.
3. Search until the search deadline (search/budget.py), which leaves the final step what the
   study's own measurements say it needs; trials cut by it keep their best epoch.
4. The final step: retrain the chosen configuration when it still fits (`final.retrain:
   auto`; of an ensemble, as many members as fit, best first), else export the trial's own
   best-epoch weights; test once; write the export. Its
   measured cost is stored with the study (`StudyRecord.export_seconds`, user attribute
   `export_seconds`), so the next run on this study plans with it instead of the prior.

Without a budget it is simply `search` then `best --export` in one command.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from automl_clf.data.dataset import Dataset, load_dataset
from automl_clf.data.preprocess import Decoding
from automl_clf.final.export import ExportResult, write_export
from automl_clf.final.folder import check_replaceable
from automl_clf.final.retrain import FinalResult, OnProgress, RetrainProgress, retrain
from automl_clf.models.factory import check_backbones
from automl_clf.report.final import final_report
from automl_clf.search.budget import (
    Budget,
    Clock,
    DataSizes,
    FinalEstimate,
    FinalPlanner,
    check_budget_covers_one_epoch,
    estimate_export_s,
    members_to_retrain,
)
from automl_clf.search.objective import SearchObserver
from automl_clf.search.record import StudyRecord
from automl_clf.search.run import SearchResult, run_search
from automl_clf.spec.models import ResolvedSpec, Spec
from automl_clf.spec.resolve import resolve
from automl_clf.spec.space import FixedParams
from automl_clf.spec.warmstart import default_params
from automl_clf.train.device import resolve_device
from automl_clf.train.session import probe_epoch_seconds


@dataclass
class JobResult:
    search: SearchResult
    final: FinalResult
    export: ExportResult
    budget: Budget | None  # its phases hold the planned and actual split of the time
    retrained: int  # members retrained (best first); the others are as searched


def run_job(
    spec: ResolvedSpec,
    export_dir: str | Path,
    *,
    n_trials: int | None = None,
    observer: SearchObserver | None = None,
    final_started: Callable[[int, FinalEstimate | None], None] | None = None,
    on_final: OnProgress | None = None,
    force: bool = False,
    jobs: int | None = None,
    started: float | None = None,
    clock: Clock = time.monotonic,
) -> JobResult:
    """Search, retrain (or not), test and export under `spec.study.budget`; see the module
    docstring.

    Args:
        observer: hears about the search (the CLI's live display).
        final_started: told when the final step starts: how many members it retrains (best
            first), and its estimate.
        on_final: told how the final step goes: the retrain's epochs, the test, the export
            (final/retrain.py `RetrainProgress`).
        jobs: trials at once during the search (search/workers.py; None: its default).
        started: the `clock` time the budget counts from (the command's start); default now.

    Raises:
        SpecError: the budget cannot fit one epoch and the export.
        ExportError: `export_dir` is not an autoclf export nor new or empty.
        DataError, StudyError, StorageError: as `search` and `best --export` raise them.
    """
    out = Path(export_dir).resolve()
    check_replaceable(out)  # refuse before any work, not after it
    budget = None
    if spec.study.budget is not None:
        budget = Budget.start(spec.study.budget, clock, started)
    resolve_device(spec.train.device)  # a device this machine lacks: exit 2, before the probe
    dataset = load_dataset(spec.data)
    check_backbones(spec)
    decoded = dataset.arrays(Decoding.of(spec.data))
    sizes = DataSizes(len(decoded["train"]), len(decoded["val"]), len(decoded["test"]))
    if budget is not None:
        budget.record("start", actual_s=budget.elapsed_s)
        _check_budget(spec, dataset, sizes, budget)

    plan_final = FinalPlanner(spec.final, sizes)
    search_from = clock()
    if budget is not None:
        budget.record("search", planned_s=budget.search_deadline - search_from)
    searched = run_search(
        spec,
        n_trials=n_trials,
        budget=budget,
        plan_final=plan_final if budget is not None else None,
        observer=observer,
        force=force,
        jobs=jobs,
    )
    study = searched.study
    estimate = plan_final(study)
    n_retrain = members_to_retrain(spec.final.retrain, estimate, budget, spec.final.ensemble)
    if budget is not None:
        budget.record("search", actual_s=clock() - search_from)
        budget.record("final", planned_s=estimate.with_margin(n_retrain))
    if final_started is not None:
        final_started(n_retrain, estimate)
    final_from = clock()
    final = retrain(
        spec,
        study,
        retrain_members=n_retrain,
        on_progress=on_final,
        adaptive_threads=budget is not None,  # throughput over bit-for-bit reproducibility
    )
    if on_final is not None:
        on_final(RetrainProgress("export"))
    export_from = clock()
    written = write_export(final, out, spec, report=final_report(final, spec, study))
    final_s = clock() - final_from
    # what the next plan calls the export: all but the training (as estimated), at least the
    # writing itself
    trained_s = sum(estimate.retrain_each_s[:n_retrain])
    overhead = max(clock() - export_from, final_s - trained_s)
    StudyRecord(export_seconds=round(overhead, 3)).save(study)
    if budget is not None:
        budget.record("final", actual_s=final_s)
    return JobResult(searched, final, written, budget, n_retrain)


def _check_budget(spec: Spec, dataset: Dataset, sizes: DataSizes, budget: Budget) -> None:
    """Probe the first trial's epoch time; refuse a budget that cannot fit one epoch and the
    export; keep the probe as the budget's epoch estimate until trials measure their own."""
    config = resolve(spec, FixedParams(default_params(spec), strict=False))
    epoch_s = probe_epoch_seconds(config, dataset)
    budget.epoch_estimate_s = epoch_s
    export_s = estimate_export_s(sizes, None, spec.final.ensemble)
    check_budget_covers_one_epoch(
        budget.total_s, elapsed_s=budget.elapsed_s, epoch_s=epoch_s, export_s=export_s
    )
