"""The Optuna objective: resolve the spec with the trial, train, report every epoch, score.

Everything a trial sampled reaches training through one `TrialConfig`, stored on the trial
(user attribute `config`) before training starts, so what ran can always be read back. The
objective's metric is reported every epoch, so the pruner can stop weak trials; a trial that
raises is FAIL with its reason (user attribute `fail_reason`), never PRUNED. Out of memory is a
property of the configuration: FAIL with reason `out of memory: …` and user attribute
`infeasible`.

Time budgets (`--timeout`, `autoclf run --time`): the trainer stops a trial at the search
deadline, keeping its best finished epoch ("anytime"). Such a trial is recorded like a complete
one (metrics, weights, user attribute `objective_value`) with user attribute
`stopped_by: deadline`, but told to Optuna as PRUNED: samplers rank pruned trials below complete
ones, so a trial that trained fewer epochs than it was meant to never passes for a finished one,
while `best` and the final model still consider it (`search/study.py::ranked_trials`). A
multi-objective study cannot hold pruned trials: there it is COMPLETE with the same attribute.
A trial cut before its first epoch ended has nothing to keep: FAIL with reason `timeout`, like an
interrupted one, and the next run retries it first. A trial whose checkpoint the disk cannot
take is FAIL with the `StorageError`'s message and user attribute `cut_short`: its last
checkpoint stays, and the next run retries it first too, once the user has made room; the error
itself stops the search (the next trial would fail the same way).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import optuna
from optuna.trial import FrozenTrial

from automl_clf.data.dataset import Dataset
from automl_clf.errors import DeadlineReached, StorageError
from automl_clf.report.trial import record_trial_report
from automl_clf.search.storage import trial_artifacts_dir
from automl_clf.spec.models import Spec
from automl_clf.spec.resolve import resolve
from automl_clf.train.checkpoint import Checkpoints
from automl_clf.train.session import TrainedModel, train_config
from automl_clf.train.trainer import Deadline, EpochResult

INTERRUPTED = "interrupted"
TIMEOUT = "timeout"
CUT_SHORT = (INTERRUPTED, TIMEOUT)  # fail reasons whose trials the next run retries first
OUT_OF_MEMORY = "out of memory"


class StoppedByDeadline(optuna.TrialPruned):
    """The trial was cut by the time budget after at least one epoch; its best epoch is
    recorded (see the module docstring). Told to Optuna as PRUNED."""


class SearchObserver(Protocol):
    """What a progress display hears about (see automl_clf/ui.py)."""

    def search_started(self, n_finished: int, target: int | None) -> None: ...

    def trial_started(self, number: int, params: dict[str, Any]) -> None: ...

    def epoch_done(self, number: int, epoch: EpochResult, max_epochs: int) -> None: ...

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None: ...

    def waiting_for_others(self) -> None: ...

    def notice(self, text: str) -> None: ...


class Objective:
    def __init__(
        self,
        spec: Spec,
        dataset: Dataset,
        observer: SearchObserver | None,
        *,
        study_uid: str = "",
        deadline: Deadline | None = None,
    ) -> None:
        """`study_uid`: the study instance's id, which its trials' checkpoints carry;
        `deadline`: the search's time budget (search/budget.py), or None."""
        self.spec = spec
        self.study_uid = study_uid
        self.dataset = dataset
        self.observer = observer
        self.metric = spec.study.metric
        self.multi = spec.study.is_multi_objective  # Optuna cannot report or prune these
        self.deadline = deadline

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        history: list[EpochResult] = []
        # A retried trial (interrupted, timed out, or its worker died) resumes from its
        # original's checkpoint: `retry_of` names the original when run.py re-queues a trial;
        # Optuna's heartbeat retry copies the dead trial's user attributes, `checkpoint_of` too.
        origin = int(
            trial.user_attrs.get("retry_of", trial.user_attrs.get("checkpoint_of", trial.number))
        )
        trial.set_user_attr("checkpoint_of", origin)
        assert self.spec.study.artifacts is not None
        checkpoints = Checkpoints(trial_artifacts_dir(self.spec.study.artifacts, origin))
        try:
            config = resolve(self.spec, trial)
            trial.set_user_attr("config", config.model_dump(mode="json"))
            if self.observer is not None:
                self.observer.trial_started(trial.number, trial.params)

            def on_epoch(epoch: EpochResult) -> None:
                history.append(epoch)
                assert epoch.val is not None
                value = epoch.val.metric(self.metric)
                if not self.multi:
                    trial.report(value, step=epoch.epoch)
                if self.observer is not None:
                    self.observer.epoch_done(trial.number, epoch, config.train.epochs)
                if not self.multi and trial.should_prune():
                    _record_epochs(trial, history)
                    raise optuna.TrialPruned(f"epoch {epoch.epoch}: {self.metric} {value:.4g}")

            trained = train_config(
                config,
                self.dataset,
                checkpoint_dir=checkpoints.folder,
                checkpoint_owner=self.study_uid,
                on_epoch=on_epoch,
                deadline=self.deadline,
            )
        except optuna.TrialPruned:
            checkpoints.clear()
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", INTERRUPTED)  # its checkpoint stays, to resume
            raise
        except DeadlineReached:
            trial.set_user_attr("fail_reason", TIMEOUT)  # likewise: the rerun resumes it
            raise
        except StorageError as exc:  # likewise, once the user has made room
            trial.set_user_attr("fail_reason", str(exc))
            trial.set_user_attr("cut_short", True)
            raise
        except Exception as exc:
            checkpoints.clear()
            if is_out_of_memory(exc):
                trial.set_user_attr("infeasible", True)
                trial.set_user_attr("fail_reason", f"{OUT_OF_MEMORY}: {exc}"[:500])
                _release_memory()
            else:
                trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            raise
        checkpoints.clear()
        _record(trial, trained, self.spec, self.dataset)
        record_constraints(trial, trained, self.spec.study.constraints.limits())
        values = objective_values(trained, self.spec.study.objectives)
        if trained.fit.stopped_by == "deadline":
            trial.set_user_attr("stopped_by", "deadline")
            if not self.multi:
                trial.set_user_attr("objective_value", values)
                raise StoppedByDeadline(f"time budget: kept epoch {trained.fit.best_epoch}")
        return values


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
    trial.set_user_attr("feasible", all(measured[n] <= limit for n, limit in limits.items()))


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA or host out-of-memory, as torch raises it (`torch.OutOfMemoryError`,
    `MemoryError`, or a RuntimeError from an allocator that cannot allocate)."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _release_memory() -> None:
    """Give the failed configuration's cached GPU memory back before the next trial."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _record_epochs(trial: optuna.Trial, history: list[EpochResult]) -> None:
    """What every finished trial carries: its best validation metrics and epochs run."""
    best = min(history, key=lambda e: e.val.loss if e.val is not None else float("inf"))
    assert best.val is not None
    trial.set_user_attr("val_loss", best.val.loss)
    trial.set_user_attr("val_accuracy", best.val.accuracy)
    trial.set_user_attr("val_balanced_accuracy", best.val.balanced_accuracy)
    trial.set_user_attr("val_macro_f1", best.val.macro_f1)
    trial.set_user_attr("best_epoch", best.epoch)
    trial.set_user_attr("epochs_run", len(history))
    trial.set_user_attr("train_seconds", round(sum(e.seconds for e in history), 3))
    trial.set_user_attr("lr_history", [e.lr for e in history])


def _record(trial: optuna.Trial, trained: TrainedModel, spec: Spec, dataset: Dataset) -> None:
    _record_epochs(trial, trained.fit.history)
    trial.set_user_attr("n_params", trained.n_params)
    trial.set_user_attr("latency_ms", round(trained.latency_ms, 4))
    trial.set_user_attr("resumed_from_epoch", trained.fit.resumed_from_epoch)
    trial.set_user_attr("preprocessing", trained.preprocessing.model_dump(mode="json"))
    trial.set_user_attr("augmentation", trained.augmentation)
    # The best epoch's weights, so the final step can export this trial as it was searched
    # (final.retrain: never); and the thread count the latency above was measured with.
    from automl_clf.models.factory import LATENCY_THREADS
    from automl_clf.train.weights import WEIGHTS_ATTR, WEIGHTS_FILE, save_weights

    trial.set_user_attr("latency_threads", LATENCY_THREADS)
    if spec.study.artifacts is not None:
        best = trial_artifacts_dir(spec.study.artifacts, trial.number) / WEIGHTS_FILE
        trial.set_user_attr(WEIGHTS_ATTR, save_weights(trained.fit.model, best))
    # optuna-dashboard shows the per-class note and the confusion-matrix artifact (report room)
    root, val = spec.study.artifacts, trained.fit.best.val
    if root is not None and val is not None:  # load_spec always sets study.artifacts
        record_trial_report(
            trial, val, dataset.classes, root, trial_artifacts_dir(root, trial.number)
        )
