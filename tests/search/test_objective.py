"""The objective (search/objective.py), one trial at a time on a real SQLite study: what a trial
records (the config it resolved, its epochs, its weights and validation probabilities), and how
each way of ending is recorded: complete, pruned, cut by the deadline (after an epoch, or
before one), interrupted, failed by its configuration."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from automl_clf.data.dataset import Dataset, load_dataset
from automl_clf.errors import DeadlineReached, FatalError, StorageError, TrialFailed
from automl_clf.search.budget import Budget
from automl_clf.search.objective import (
    Objective,
    QuietObserver,
    SearchObserver,
    StoppedByDeadline,
    failure_record,
)
from automl_clf.search.record import (
    CUT_AT_DEADLINE,
    DEADLINE,
    INTERRUPTED,
    OUT_OF_MEMORY,
    TIMEOUT,
    TrialRecord,
    trial_state,
)
from automl_clf.search.storage import trial_artifacts_dir
from automl_clf.spec import load_spec
from automl_clf.spec.config import TrialConfig
from automl_clf.spec.models import ResolvedSpec
from automl_clf.spec.resolve import resolve
from automl_clf.spec.space import FixedParams
from automl_clf.train.checkpoint import CHECKPOINT_FILE
from automl_clf.train.weights import file_sha256, load_probabilities
from automl_clf.versions import TRIAL_CONFIG
from tests.conftest import SteppedClock, jump_at, tiny_spec, write_spec

EPOCHS = 3


@dataclass
class Bench:
    """A spec, its data and a fresh study: where one trial of the objective runs."""

    spec: ResolvedSpec
    dataset: Dataset
    study: optuna.Study

    def folder(self, number: int) -> Path:
        return trial_artifacts_dir(self.spec.study.artifacts, number)

    def run(
        self,
        observer: SearchObserver | None = None,
        *,
        deadline: Budget | None = None,
    ) -> tuple[FrozenTrial, Any]:
        """One trial: ask, call the objective, tell the state run.py would tell; the frozen
        trial and what the objective returned or raised."""
        trial = self.study.ask()
        objective = Objective(self.spec, self.dataset, observer, study_uid="u", deadline=deadline)
        outcome: Any
        try:
            outcome = objective(trial)
        except optuna.TrialPruned as exc:
            frozen = self.study.tell(trial, state=TrialState.PRUNED)
            return frozen, exc
        except (Exception, KeyboardInterrupt, DeadlineReached) as exc:
            frozen = self.study.tell(trial, state=TrialState.FAIL)
            return frozen, exc
        return self.study.tell(trial, outcome), outcome


def bench(
    tmp_path: Path,
    digits_root: Path,
    *,
    pruner: optuna.pruners.BasePruner | None = None,
    **sections: dict[str, Any],
) -> Bench:
    sections.setdefault("train", {})
    sections["train"] = {"epochs": EPOCHS, "schedule": "constant", **sections["train"]}
    raw = tiny_spec(digits_root, tmp_path, **sections)
    spec = load_spec(write_spec(tmp_path / "spec.yaml", raw))
    study = optuna.create_study(
        storage=str(spec.study.storage),
        study_name=str(spec.study.name),
        directions=spec.study.directions,
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=pruner or optuna.pruners.NopPruner(),
    )
    return Bench(spec, load_dataset(spec.data), study)


class Interrupt(QuietObserver):
    """Presses Ctrl-C (raises KeyboardInterrupt, as the signal handler does) after epoch 1."""

    def epoch_done(self, number: int, result: Any, max_epochs: int) -> None:
        raise KeyboardInterrupt


def test_a_complete_trial_records_the_config_it_resolved_and_its_epochs(
    tmp_path: Path, digits_root: Path
) -> None:
    b = bench(tmp_path, digits_root)
    trial, value = b.run()
    assert trial.state == TrialState.COMPLETE
    record = TrialRecord.of(trial)
    # The config stored is what the spec resolves to with the trial's params, whole.
    replayed = resolve(b.spec, FixedParams(trial.params)).model_dump(mode="json")
    assert record.config == replayed
    assert record.config_version == TRIAL_CONFIG.version
    config = TrialConfig.model_validate(record.config)
    assert config.train.lr == pytest.approx(trial.params["train.lr"])
    # Every epoch reported to Optuna (what the pruner sees) and recorded in order.
    assert record.epochs_run == EPOCHS
    assert record.val_loss_history is not None and record.lr_history is not None
    assert list(trial.intermediate_values) == [1, 2, 3]
    assert list(trial.intermediate_values.values()) == pytest.approx(record.val_loss_history)
    assert record.lr_history == pytest.approx([config.train.lr] * EPOCHS)  # constant schedule
    for history in (record.train_loss_history, record.val_accuracy_history):
        assert history is not None and len(history) == EPOCHS
    # The best epoch is the one of least validation loss; the trial's value is its loss.
    best = int(np.argmin(record.val_loss_history)) + 1
    assert record.best_epoch == best
    assert record.val_loss == pytest.approx(min(record.val_loss_history))
    assert value == pytest.approx(record.val_loss) == pytest.approx(trial.value)
    assert record.resumed_from_epoch == 0 and record.checkpoint_of == trial.number
    assert record.n_params is not None and record.n_params > 0
    assert record.preprocessing is not None and record.latency_ms is not None


def test_a_complete_trial_keeps_its_weights_and_validation_probabilities_not_its_checkpoint(
    tmp_path: Path, digits_root: Path
) -> None:
    b = bench(tmp_path, digits_root)
    trial, _ = b.run()
    record = TrialRecord.of(trial)
    folder = b.folder(trial.number)
    assert record.weights is not None and record.val_probabilities is not None
    weights = Path(record.weights["file"])
    assert weights.parent == folder and weights.is_file()
    assert file_sha256(weights) == record.weights["sha256"]
    n_val = len(b.dataset.splits.val)
    probabilities = load_probabilities(record.val_probabilities, (n_val, 3))
    assert probabilities is not None
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert not (folder / CHECKPOINT_FILE).exists()  # a finished trial resumes nothing


def test_a_pruned_trial_keeps_its_epochs_but_not_its_checkpoint(
    tmp_path: Path, digits_root: Path
) -> None:
    # Any validation loss is above -1: pruned after its first epoch.
    b = bench(tmp_path, digits_root, pruner=optuna.pruners.ThresholdPruner(upper=-1.0))
    trial, raised = b.run()
    assert isinstance(raised, optuna.TrialPruned) and "epoch 1: val_loss" in str(raised)
    assert trial.state == TrialState.PRUNED and trial_state(trial) == "pruned"
    record = TrialRecord.of(trial)
    assert record.epochs_run == 1 and record.val_loss is not None
    assert record.fail_reason is None and record.stopped_by is None
    assert not (b.folder(trial.number) / CHECKPOINT_FILE).exists()


def test_a_trial_cut_by_the_deadline_after_an_epoch_keeps_it_and_is_pruned(
    tmp_path: Path, digits_root: Path
) -> None:
    b = bench(tmp_path, digits_root)
    clock = SteppedClock()
    trial, raised = b.run(jump_at(clock, epoch=1), deadline=Budget.start(60, clock))
    assert isinstance(raised, StoppedByDeadline)
    # Optuna holds it PRUNED (samplers rank it below complete trials), autoclf as cut: usable.
    assert trial.state == TrialState.PRUNED and trial_state(trial) == CUT_AT_DEADLINE
    record = TrialRecord.of(trial)
    assert record.stopped_by == DEADLINE and record.epochs_run == 1
    assert record.objective_value == pytest.approx(record.val_loss)
    assert record.weights is not None and record.fail_reason is None


def test_a_multi_objective_trial_cut_by_the_deadline_is_complete_and_marked(
    tmp_path: Path, digits_root: Path
) -> None:
    b = bench(
        tmp_path,
        digits_root,
        study={"objective": ["accuracy", "n_params"], "pruner": "none"},
    )
    clock = SteppedClock()
    trial, values = b.run(jump_at(clock, epoch=1), deadline=Budget.start(60, clock))
    assert trial.state == TrialState.COMPLETE and trial_state(trial) == CUT_AT_DEADLINE
    record = TrialRecord.of(trial)
    assert record.stopped_by == DEADLINE and record.epochs_run == 1
    assert values == pytest.approx([record.val_accuracy, record.n_params])
    assert trial.intermediate_values == {}  # Optuna cannot take a multi-objective report


def test_a_trial_the_deadline_cuts_before_its_first_epoch_fails_as_timeout(
    tmp_path: Path, digits_root: Path
) -> None:
    b = bench(tmp_path, digits_root)
    clock = SteppedClock()
    trial, raised = b.run(jump_at(clock), deadline=Budget.start(60, clock))
    assert isinstance(raised, DeadlineReached)
    assert trial.state == TrialState.FAIL
    record = TrialRecord.of(trial)
    assert record.fail_reason == TIMEOUT and record.retried_first
    assert record.epochs_run is None and record.weights is None  # nothing to keep


def test_an_interrupted_trial_keeps_its_checkpoint_and_its_retry_resumes_it(
    tmp_path: Path, digits_root: Path
) -> None:
    b = bench(tmp_path, digits_root)
    first, raised = b.run(Interrupt())
    assert isinstance(raised, KeyboardInterrupt)
    record = TrialRecord.of(first)
    assert record.fail_reason == INTERRUPTED and record.retried_first
    assert (b.folder(first.number) / CHECKPOINT_FILE).is_file()
    # The retry (as run.py queues it) trains in the original's folder, from its epoch 1.
    b.study.enqueue_trial(first.params, user_attrs={"retry_of": first.number})
    retry, _ = b.run()
    assert retry.number != first.number and retry.state == TrialState.COMPLETE
    resumed = TrialRecord.of(retry)
    assert resumed.checkpoint_of == first.number and resumed.resumed_from_epoch == 1
    assert resumed.epochs_run == EPOCHS  # its history goes on from the checkpoint's
    assert not (b.folder(first.number) / CHECKPOINT_FILE).exists()


def test_a_trial_whose_configuration_fails_is_fail_with_its_reason_never_pruned(
    tmp_path: Path, digits_root: Path
) -> None:
    # An absurd learning rate: the loss diverges in the first epoch.
    b = bench(tmp_path, digits_root, train={"lr": 1.0e12, "optimizer": "sgd"})
    trial, raised = b.run()
    assert isinstance(raised, TrialFailed) and not isinstance(raised, FatalError)
    assert trial.state == TrialState.FAIL and trial_state(trial) == "fail"
    record = TrialRecord.of(trial)
    assert record.fail_reason is not None and record.fail_reason.startswith("TrialFailed: ")
    assert "loss became" in record.fail_reason
    assert record.traceback is not None and "TrialFailed" in record.traceback
    assert not record.retried_first and not record.infeasible
    assert record.config is not None  # what failed can be read back
    assert not (b.folder(trial.number) / CHECKPOINT_FILE).exists()


def test_a_trial_over_a_constraint_is_recorded_infeasible(
    tmp_path: Path, digits_root: Path
) -> None:
    b = bench(tmp_path, digits_root, study={"constraints": {"max_params": 10}})
    trial, _ = b.run()
    record = TrialRecord.of(trial)
    assert record.feasible is False and record.n_params is not None
    assert trial.constraints == {"n_params": record.n_params - 10}  # > 0: infeasible


def _raised(exc: Exception) -> Exception:
    """`exc` with a traceback, as a trial raises it."""
    try:
        raise exc
    except Exception as caught:
        return caught


@pytest.mark.parametrize(
    ("exc", "reason", "cut_short", "infeasible", "with_traceback"),
    [
        (ValueError("bad shape"), "ValueError: bad shape", False, False, True),
        (RuntimeError("CUDA out of memory. Tried"), f"{OUT_OF_MEMORY}: CUDA", False, True, True),
        (OSError(5, "Input/output error"), "OSError: [Errno 5]", True, False, True),
        (StorageError("the study storage x.db is full"), "the study storage", True, False, False),
    ],
    ids=["configuration", "out-of-memory", "environment", "storage"],
)
def test_each_kind_of_failure_is_recorded_as_what_it_is(
    exc: Exception, reason: str, cut_short: bool, infeasible: bool, with_traceback: bool
) -> None:
    from automl_clf.errors import fatal_error

    raised = _raised(exc)
    record = failure_record(raised, fatal_error(raised))
    assert record.fail_reason is not None and record.fail_reason.startswith(reason)
    assert record.cut_short is cut_short and record.retried_first is cut_short
    assert record.infeasible is infeasible
    assert (record.traceback is not None) is with_traceback
