"""The Optuna objective: resolve the spec with the trial, train, report every epoch, score.

Everything a trial sampled reaches training through one `TrialConfig`, stored on the trial
(`TrialRecord.config`, user attribute `config`) before training starts, so what ran can always be
read back; what it measured follows in the same record (search/record.py). The objective's
metric is reported every epoch, so the pruner can stop weak trials.

A trial that raises is FAIL with its reason (`fail_reason`) and shortened traceback
(`traceback`), never PRUNED; errors.py decides whose fault it was. The configuration's (a NaN
loss, a shape mismatch, out of memory: `fail_reason` `out of memory: …` and `infeasible`) fails
the trial alone, and the search goes on. The environment's (a missing library, the file system,
the CUDA driver, a disk that cannot take the checkpoint) is raised as a `FatalError` that stops
the search at once: the trial keeps its checkpoint and `cut_short`, and the next run retries it
first, once the user has fixed what the message says.

Time budgets (`--timeout`, `autoclf run --time`): the trainer stops a trial at the search
deadline, keeping its best finished epoch ("anytime"). Such a trial is recorded like a complete
one (metrics, weights, `objective_value`) with `stopped_by: deadline`, but told to Optuna as
PRUNED: samplers rank pruned trials below complete ones, so a trial that trained fewer epochs
than it was meant to never passes for a finished one, while `best` and the final model still
consider it (`search/study.py::ranked_trials`). A multi-objective study cannot hold pruned
trials: there it is COMPLETE with the same attribute. A trial cut before its first epoch ended
has nothing to keep: FAIL with reason `timeout`, like an interrupted one (`interrupted`), and
the next run retries it first from its checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import optuna
from optuna.trial import FrozenTrial

from automl_clf.data.batches import OnStep
from automl_clf.data.dataset import Dataset
from automl_clf.errors import (
    DeadlineReached,
    FatalError,
    StorageError,
    fatal_error,
    is_out_of_memory,
)
from automl_clf.search.interrupts import raise_if_interrupted
from automl_clf.search.record import (
    DEADLINE,
    FAIL_REASON_CHARS,
    INTERRUPTED,
    OUT_OF_MEMORY,
    TIMEOUT,
    TrialRecord,
    short_traceback,
)
from automl_clf.search.storage import trial_artifacts_dir
from automl_clf.spec.config import TrialConfig
from automl_clf.spec.models import ResolvedSpec
from automl_clf.spec.resolve import resolve
from automl_clf.train.checkpoint import Checkpoints
from automl_clf.train.metrics import EvalResult
from automl_clf.train.session import TrainedModel, train_config
from automl_clf.train.trainer import Deadline, EpochResult
from automl_clf.versions import TRIAL_CONFIG

if TYPE_CHECKING:
    from automl_clf.search.budget import Budget


class StoppedByDeadline(optuna.TrialPruned):
    """The trial was cut by the time budget after at least one epoch; its best epoch is
    recorded (see the module docstring). Told to Optuna as PRUNED."""


class SearchObserver(Protocol):
    """What a progress display hears about (automl_clf/cli/progress.py), all in the searching
    process; `QuietObserver` hears it and does nothing, to build on."""

    def search_started(
        self, study: optuna.Study, target: int | None, *, budget: Budget | None, workers: int
    ) -> None:
        """Trials are about to start: the study (its finished trials count towards `target`),
        the time budget if any, and how many trials run at once on this machine."""

    def trial_started(self, number: int, params: dict[str, Any], config: TrialConfig) -> None:
        """A trial starts: what it sampled and the whole configuration it trains."""

    def steps_done(self, number: int, step: int, n_steps: int) -> None:
        """Batches done inside the running epoch, at most every half second."""

    def epoch_done(self, number: int, epoch: EpochResult, max_epochs: int) -> None: ...

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """A trial of this process ended (COMPLETE, PRUNED or FAIL); other workers' trials
        are read from the study."""

    def waiting_for_others(self) -> None:
        """Only trials running in other workers are missing; looked at again every 2 s."""

    def notice(self, text: str) -> None: ...


class TrialReporter(Protocol):
    """What a finished trial shows beside its study: optuna-dashboard's per-class note and
    validation confusion matrix (report/trial.py `record_trial_report`, which the commands
    pass in: the search room sits below the report room and does not import it). Returns why
    it could not, or None; a reporter never fails the trial."""

    def __call__(
        self,
        trial: optuna.Trial,
        val: EvalResult,
        classes: list[str],
        artifacts_root: Path,
        folder: Path,
    ) -> str | None: ...


class QuietObserver:
    """A `SearchObserver` that does nothing: subclass it and override what you need."""

    def search_started(
        self, study: optuna.Study, target: int | None, *, budget: Budget | None, workers: int
    ) -> None: ...

    def trial_started(self, number: int, params: dict[str, Any], config: TrialConfig) -> None: ...

    def steps_done(self, number: int, step: int, n_steps: int) -> None: ...

    def epoch_done(self, number: int, epoch: EpochResult, max_epochs: int) -> None: ...

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None: ...

    def waiting_for_others(self) -> None: ...

    def notice(self, text: str) -> None: ...


class Objective:
    def __init__(
        self,
        spec: ResolvedSpec,
        dataset: Dataset,
        observer: SearchObserver | None,
        *,
        study_uid: str = "",
        deadline: Deadline | None = None,
        reporter: TrialReporter | None = None,
    ) -> None:
        """`study_uid`: the study instance's id, which its trials' checkpoints carry;
        `deadline`: the search's time budget (search/budget.py), or None; `reporter`: shows
        each finished trial beside the study (optuna-dashboard), or None."""
        self.spec = spec
        self.reporter = reporter
        self.study_uid = study_uid
        self.dataset = dataset
        self.observer = observer
        self.metric = spec.study.metric
        self.multi = spec.study.is_multi_objective  # Optuna cannot report or prune these
        self.deadline = deadline

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        """One trial: resolve its config, train it (resuming its checkpoint), record it; a
        failure is recorded as failed or fatal (errors.py), an interruption keeps the
        checkpoint for the rerun."""
        history: list[EpochResult] = []
        checkpoints = self._checkpoints(trial)
        try:
            config = resolve(self.spec, trial)
            stored = config.model_dump(mode="json")
            TrialRecord(config=stored, config_version=TRIAL_CONFIG.version).save(trial)
            if self.observer is not None:
                self.observer.trial_started(trial.number, trial.params, config)
            trained = train_config(
                config,
                self.dataset,
                checkpoint_dir=checkpoints.folder,
                checkpoint_owner=self.study_uid,
                on_epoch=self._on_epoch(trial, config, history),
                on_step=self._on_step(trial.number),
                deadline=self.deadline,
            )
            _record(trial, trained, self.spec, self.dataset, self.reporter)
            record_constraints(trial, trained, self.spec.study.constraints.limits())
        except optuna.TrialPruned:
            checkpoints.clear()
            raise
        except KeyboardInterrupt:  # its checkpoint stays, to resume
            TrialRecord(fail_reason=INTERRUPTED).save(trial)
            raise
        except DeadlineReached:  # likewise: the rerun resumes it
            TrialRecord(fail_reason=TIMEOUT).save(trial)
            raise
        except Exception as exc:
            fatal = fatal_error(exc)
            if fatal is None:  # the configuration's fault: nothing to resume
                checkpoints.clear()
            failure_record(exc, fatal).save(trial)
            if is_out_of_memory(exc):
                _release_memory()
            if fatal is None or fatal is exc:
                raise
            raise fatal from exc
        checkpoints.clear()
        return self._values(trial, trained)

    def _checkpoints(self, trial: optuna.Trial) -> Checkpoints:
        """The trial's checkpoint folder. A retried trial (interrupted, timed out, or its worker
        died) resumes from its original's checkpoint: `retry_of` names the original when run.py
        re-queues a trial; Optuna's heartbeat retry copies the dead trial's user attributes,
        `checkpoint_of` too."""
        stored = TrialRecord.of(trial)
        origin = next(
            n for n in (stored.retry_of, stored.checkpoint_of, trial.number) if n is not None
        )
        TrialRecord(checkpoint_of=origin).save(trial)
        return Checkpoints(trial_artifacts_dir(self.spec.study.artifacts, origin))

    def _on_epoch(
        self, trial: optuna.Trial, config: TrialConfig, history: list[EpochResult]
    ) -> Callable[[EpochResult], None]:
        """The trainer's epoch hook: report to Optuna, tell the observer, prune."""

        def on_epoch(epoch: EpochResult) -> None:
            raise_if_interrupted()  # a signal Python swallowed (search/interrupts.py)
            history.append(epoch)
            assert epoch.val is not None
            value = epoch.val.metric(self.metric)
            if not self.multi:
                trial.report(value, step=epoch.epoch)
            if self.observer is not None:
                self.observer.epoch_done(trial.number, epoch, config.train.epochs)
            if not self.multi and trial.should_prune():
                epochs_record(history).save(trial)
                raise optuna.TrialPruned(f"epoch {epoch.epoch}: {self.metric} {value:.4g}")

        return on_epoch

    def _values(self, trial: optuna.Trial, trained: TrainedModel) -> float | list[float]:
        """The objective values of a trained trial. One the deadline cut keeps its best epoch:
        PRUNED with its value recorded (single objective), COMPLETE and marked (several)."""
        values = objective_values(trained, self.spec.study.objectives)
        if trained.fit.stopped_by == DEADLINE:
            if self.multi:  # Optuna cannot hold it as PRUNED: COMPLETE, marked
                TrialRecord(stopped_by=DEADLINE).save(trial)
                return values
            assert isinstance(values, float)
            TrialRecord(stopped_by=DEADLINE, objective_value=values).save(trial)
            raise StoppedByDeadline(f"time budget: kept epoch {trained.fit.best_epoch}")
        return values

    def _on_step(self, number: int) -> OnStep:
        """The trainer's batch hook (at most every `STEP_REPORT_S`): a signal deferred out of
        the storage's code stops the trial here (search/interrupts.py); tells the observer."""
        observer = self.observer

        def on_step(step: int, n_steps: int) -> None:
            raise_if_interrupted()
            if observer is not None:
                observer.steps_done(number, step, n_steps)

        return on_step


def failure_record(exc: Exception, fatal: FatalError | None) -> TrialRecord:
    """What a trial that raised `exc` stores (errors.py: `fatal` is `fatal_error(exc)`).

    A fatal error keeps the checkpoint and is retried first (`cut_short`); a failure of the
    storage keeps only its own message, which says which file and what to do (the storage may be
    what cannot take more). Out of memory is `infeasible`.
    """
    if isinstance(exc, StorageError):
        return TrialRecord(fail_reason=str(exc), cut_short=True)
    if fatal is not None:
        return TrialRecord(fail_reason=str(fatal), traceback=short_traceback(exc), cut_short=True)
    if is_out_of_memory(exc):
        reason = f"{OUT_OF_MEMORY}: {exc}"[:FAIL_REASON_CHARS]
        return TrialRecord(fail_reason=reason, traceback=short_traceback(exc), infeasible=True)
    return TrialRecord(fail_reason=f"{type(exc).__name__}: {exc}", traceback=short_traceback(exc))


def objective_values(trained: TrainedModel, objectives: Sequence[str]) -> float | list[float]:
    """The trial's value(s): the best epoch's validation metrics, and measured costs."""
    best = trained.fit.best.val
    assert best is not None
    measured = {"n_params": float(trained.n_params), "latency_ms": trained.latency_ms}
    values = [measured[name] if name in measured else best.metric(name) for name in objectives]
    return values[0] if len(values) == 1 else values


def record_constraints(
    trial: optuna.Trial, trained: TrainedModel, limits: dict[str, float]
) -> None:
    """`trial.set_constraint(name, measured - limit)` for each limit (<= 0 is feasible), and
    user attribute `feasible`, so samplers, `best` and the Pareto front skip infeasible trials."""
    if not limits:
        return
    measured = {"n_params": float(trained.n_params), "latency_ms": trained.latency_ms}
    for name, limit in limits.items():
        trial.set_constraint(name, measured[name] - limit)
    feasible = all(measured[n] <= limit for n, limit in limits.items())
    TrialRecord(feasible=feasible).save(trial)


def _release_memory() -> None:
    """Give the failed configuration's cached GPU memory back before the next trial."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def epochs_record(history: list[EpochResult]) -> TrialRecord:
    """What every finished or pruned trial carries: its best validation metrics and epochs."""
    best = min(history, key=lambda e: e.val.loss if e.val is not None else float("inf"))
    assert best.val is not None
    return TrialRecord(
        val_loss=best.val.loss,
        val_accuracy=best.val.accuracy,
        val_balanced_accuracy=best.val.balanced_accuracy,
        val_macro_f1=best.val.macro_f1,
        best_epoch=best.epoch,
        epochs_run=len(history),
        train_seconds=round(sum(e.seconds for e in history), 3),
        lr_history=[e.lr for e in history],
        train_loss_history=[e.train_loss for e in history],
        train_accuracy_history=[e.train_accuracy for e in history],
        val_loss_history=[e.val.loss for e in history if e.val is not None],
        val_accuracy_history=[e.val.accuracy for e in history if e.val is not None],
    )


def _record(
    trial: optuna.Trial,
    trained: TrainedModel,
    spec: ResolvedSpec,
    dataset: Dataset,
    reporter: TrialReporter | None,
) -> None:
    """The finished trial's record: its epochs, its model, its best-epoch weights (so the final
    step can export it as searched, `final.retrain: never`) and validation probabilities (what
    the final step selects an ensemble on), and its dashboard report."""
    from automl_clf.models.factory import LATENCY_THREADS
    from automl_clf.train.weights import (
        PROBABILITIES_FILE,
        WEIGHTS_FILE,
        save_probabilities,
        save_weights,
    )

    epochs_record(trained.fit.history).save(trial)
    TrialRecord(
        n_params=trained.n_params,
        latency_ms=round(trained.latency_ms, 4),
        latency_threads=LATENCY_THREADS,  # what latency_ms was measured with
        resumed_from_epoch=trained.fit.resumed_from_epoch,
        preprocessing=trained.preprocessing.model_dump(mode="json"),
        augmentation=trained.augmentation,
    ).save(trial)
    root, val = spec.study.artifacts, trained.fit.best.val
    folder = trial_artifacts_dir(root, trial.number)
    TrialRecord(weights=save_weights(trained.fit.model, folder / WEIGHTS_FILE)).save(trial)
    if val is not None:
        kept = save_probabilities(val.probabilities, folder / PROBABILITIES_FILE)
        TrialRecord(val_probabilities=kept).save(trial)
    if val is not None and reporter is not None:
        # optuna-dashboard shows the per-class note and confusion matrix
        problem = reporter(trial, val, dataset.classes, root, folder)
        if problem is not None:
            TrialRecord(report_error=problem).save(trial)
