"""The Optuna objective: resolve the spec with the trial, train, report every epoch, score.

Everything a trial sampled reaches training through one `TrialConfig`, stored on the trial
(user attribute `config`) before training starts, so what ran can always be read back. The
objective's metric is reported every epoch, so the pruner can stop weak trials; a trial that
raises is FAIL with its reason (user attribute `fail_reason`), never PRUNED.
"""

from __future__ import annotations

from typing import Any, Protocol

import optuna
from optuna.trial import FrozenTrial

from automl_clf.data.dataset import Dataset
from automl_clf.report.trial import record_trial_report
from automl_clf.search.storage import trial_artifacts_dir
from automl_clf.spec.models import Spec
from automl_clf.spec.resolve import resolve
from automl_clf.train.checkpoint import Checkpoints
from automl_clf.train.session import TrainedModel, train_config
from automl_clf.train.trainer import EpochResult

INTERRUPTED = "interrupted"


class SearchObserver(Protocol):
    """What a progress display hears about (see automl_clf/ui.py)."""

    def search_started(self, n_finished: int, target: int) -> None: ...

    def trial_started(self, number: int, params: dict[str, Any]) -> None: ...

    def epoch_done(self, number: int, epoch: EpochResult, max_epochs: int) -> None: ...

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None: ...


class Objective:
    def __init__(self, spec: Spec, dataset: Dataset, observer: SearchObserver | None) -> None:
        self.spec = spec
        self.dataset = dataset
        self.observer = observer
        self.metric = spec.study.objective

    def __call__(self, trial: optuna.Trial) -> float:
        history: list[EpochResult] = []
        # A retried trial (interrupted, or its worker died) resumes from its original's
        # checkpoint: `checkpoint_of` travels with the params when a trial is re-queued.
        origin = int(trial.user_attrs.get("checkpoint_of", trial.number))
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
                trial.report(value, step=epoch.epoch)
                if self.observer is not None:
                    self.observer.epoch_done(trial.number, epoch, config.train.epochs)
                if trial.should_prune():
                    _record_epochs(trial, history)
                    raise optuna.TrialPruned(f"epoch {epoch.epoch}: {self.metric} {value:.4g}")

            trained = train_config(
                config, self.dataset, checkpoint_dir=checkpoints.folder, on_epoch=on_epoch
            )
        except optuna.TrialPruned:
            checkpoints.clear()
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", INTERRUPTED)  # its checkpoint stays, to resume
            raise
        except Exception as exc:
            checkpoints.clear()
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            raise
        checkpoints.clear()
        _record(trial, trained, self.spec, self.dataset)
        best = trained.fit.best.val
        assert best is not None
        return best.metric(self.metric)


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
    # optuna-dashboard shows the per-class note and the confusion-matrix artifact (report room)
    root, val = spec.study.artifacts, trained.fit.best.val
    if root is not None and val is not None:  # load_spec always sets study.artifacts
        record_trial_report(
            trial, val, dataset.classes, root, trial_artifacts_dir(root, trial.number)
        )
