"""What a trial and a study store about themselves: typed records, written by the objective,
the search loop and the job, read by the study, the budget planner, the final model, the
report and the CLI.

Optuna keeps these facts as user attributes, a JSON dict of bare string keys. `TrialRecord` (a
trial's) and `StudyRecord` (a study's) are those dicts as frozen pydantic models: each field is
one user attribute, **the field's name is its key**, and the values are stored as they always
were, so studies written before the records, optuna-dashboard and `trial.user_attrs["val_loss"]`
read the same thing.

- Writing: build a record of the fields to set and `save` it (only the fields given are
  written): `TrialRecord(fail_reason=TIMEOUT).save(trial)`. A field name that does not exist is
  an error (`extra="forbid"`), and so is a value of the wrong type.
- Reading: `TrialRecord.of(trial)`, `StudyRecord.of(study)`. A missing attribute reads as its
  default (None, or what its absence meant); a value this version cannot read (written by
  another tool) reads as missing rather than failing the command that looks at the study.

The values of `fail_reason` that mean "not the configuration's fault", and of `stopped_by`, are
the constants below; errors.py says which failures stop a search and which fail their trial.

A trial's state, as every command, display and report names it, is `trial_state`: Optuna's, but
for a trial the time budget cut after an epoch (`stopped_by: deadline`), which Optuna holds as
PRUNED (one objective: samplers rank it below complete trials) or COMPLETE (several) and which
keeps its best epoch like a complete one: "cut at the deadline". `STATES` gives each state's
name for people; JSON carries the key.
"""

from __future__ import annotations

import traceback as tracebacks
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, Self

from pydantic import BaseModel, ConfigDict, ValidationError

INTERRUPTED = "interrupted"  # fail_reason: Ctrl-C or SIGTERM during the trial
TIMEOUT = "timeout"  # fail_reason: the time budget ended it before its first epoch did
CUT_SHORT = (INTERRUPTED, TIMEOUT)  # fail reasons whose trials the next run retries first
OUT_OF_MEMORY = "out of memory"  # how an out-of-memory fail_reason begins
DEADLINE = "deadline"  # stopped_by: the time budget stopped it after an epoch (kept, PRUNED)
FAIL_REASON_CHARS = 500  # an out-of-memory message is cut to this many characters
TRACEBACK_CHARS = 4000  # a stored traceback keeps its last this many characters


CUT_AT_DEADLINE = "cut_at_deadline"  # trial_state: the time budget cut it after an epoch
STATES = {  # trial_state -> its name for people, in the order counts are listed
    "complete": "complete",
    CUT_AT_DEADLINE: "cut at the deadline",
    "pruned": "pruned",  # by the pruner only
    "fail": "failed",
    "running": "running",
    "waiting": "waiting",
}
USABLE_STATES = ("complete", CUT_AT_DEADLINE)  # a result the final model can be made of
USABLE = "complete or cut at the deadline"  # how messages say which trials are usable


class _Owner(Protocol):
    """An Optuna trial or study: what holds user attributes."""

    @property
    def user_attrs(self) -> dict[str, Any]: ...

    def set_user_attr(self, key: str, value: Any) -> None: ...


class UserAttrs(BaseModel):
    """A typed view of an Optuna object's user attributes (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def of(cls, owner: _Owner) -> Self:
        """The record `owner` (a trial, frozen or running, or a study) has stored so far."""
        return cls.from_attrs(owner.user_attrs)

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> Self:
        """The record in a user-attributes dict: other keys are not the record's; a value of
        the wrong type reads as missing (see the module docstring)."""
        known = {key: value for key, value in attrs.items() if key in cls.model_fields}
        try:
            return cls.model_validate(known)
        except ValidationError as exc:
            unreadable = {error["loc"][0] for error in exc.errors() if error["loc"]}
            return cls.model_validate({k: v for k, v in known.items() if k not in unreadable})

    def attrs(self) -> dict[str, Any]:
        """The user attributes this record sets: the fields given when it was made, in the
        order they are declared."""
        given = self.model_fields_set
        return {name: getattr(self, name) for name in type(self).model_fields if name in given}

    def save(self, owner: _Owner) -> None:
        """Write the fields given when this record was made to `owner`'s user attributes."""
        for key, value in self.attrs().items():
            owner.set_user_attr(key, value)


class StudyRecord(UserAttrs):
    """What a study stores: the data and objectives it was made with, its search space (what
    resuming checks, search/study.py) and what its final step measured (search/budget.py)."""

    objective: str | list[str] | None = None  # study.objective, as the spec gives it
    classes: list[str] | None = None  # in output order
    split_fingerprint: str | None = None  # data/dataset.py's fingerprint of the splits
    data_root: str | None = None
    space: list[str] | None = None  # the search space, one line per param
    space_hash: str | None = None  # a hash of `space`
    export_seconds: float | None = None  # the last export's cost beyond its training (older)
    # seconds each part of the last final step took (search/budget.py FINAL_PRIORS' keys): what
    # the next run of this study plans its final step with
    final_costs: dict[str, float] | None = None
    # what `study.fit_budget: auto` changed when the study was created (dotted path -> value,
    # as --set): reapplied by every later run, so the search space stays the same
    budget_fit: dict[str, Any] | None = None


class TrialRecord(UserAttrs):
    """Everything a trial stores as user attributes (see the module docstring); every field is
    optional, as each is written when it becomes known."""

    # What runs, written before training starts
    worker: str | None = None  # host:pid of the process that ran it
    config: dict[str, Any] | None = None  # the resolved TrialConfig, as JSON (spec/config.py)
    # the trial config version of `config` (automl_clf/versions.py); None: 1, written before it
    config_version: int | None = None
    checkpoint_of: int | None = None  # the trial whose checkpoint folder it trains in
    retry_of: int | None = None  # queued again with the params of this (original) trial …
    requeued_from: int | None = None  # … from this FAIL trial (search/run.py)

    # What it measured: the best epoch by validation loss (a pruned trial's too)
    val_loss: float | None = None
    val_accuracy: float | None = None
    val_balanced_accuracy: float | None = None
    val_macro_f1: float | None = None
    best_epoch: int | None = None  # 1-based; what the final retrain trains for
    epochs_run: int | None = None
    train_seconds: float | None = None  # training + validation, all epochs run
    lr_history: list[float] | None = None  # each epoch's learning rate, in order
    # each epoch's metrics, in order (the report's learning curves); train accuracy is over the
    # augmented batches as they trained (train/trainer.py), None where it was not recorded
    train_loss_history: list[float] | None = None
    train_accuracy_history: list[float | None] | None = None
    val_loss_history: list[float] | None = None
    val_accuracy_history: list[float] | None = None
    resumed_from_epoch: int | None = None  # the checkpoint's epoch it went on from (0: none)

    # The trained model (a finished trial)
    n_params: int | None = None
    latency_ms: float | None = None  # batch 1, eager, on the training device (models/factory.py)
    latency_threads: int | None = None  # CPU threads `latency_ms` was measured with
    preprocessing: dict[str, Any] | None = None  # data/preprocess.py's Preprocessing, as JSON
    augmentation: dict[str, Any] | None = None  # the training augmentation (train/session.py)
    weights: dict[str, str] | None = None  # best epoch's {file, sha256} (train/weights.py)
    # the best epoch's validation softmax, {file, sha256}: the final step's ensemble selection
    val_probabilities: dict[str, str] | None = None
    feasible: bool = True  # within study.constraints (written only when there are some)
    stopped_by: str | None = None  # DEADLINE: the time budget cut it after an epoch
    objective_value: float | None = None  # such a trial's best-epoch objective (Optuna: PRUNED)
    report_error: str | None = None  # why its dashboard figure could not be written

    # Why it failed (a FAIL trial; errors.py)
    fail_reason: str | None = None
    traceback: str | None = None  # the exception's, shortened (`short_traceback`)
    infeasible: bool = False  # out of memory: the configuration is too big for the device
    cut_short: bool = False  # failed through no fault of its configuration: retried first

    @property
    def retried_first(self) -> bool:
        """Whether a FAIL trial is queued again, first, by the next run: it was interrupted,
        timed out, or failed through no fault of its configuration (a fatal error)."""
        return self.fail_reason in CUT_SHORT or self.cut_short

    @property
    def stopped_by_deadline(self) -> bool:
        """Whether the time budget stopped it after an epoch: its best epoch counts."""
        return self.stopped_by == DEADLINE


class _Trial(Protocol):
    """An Optuna trial, frozen or running: a state and user attributes."""

    @property
    def state(self) -> Any: ...  # an optuna.trial.TrialState

    @property
    def user_attrs(self) -> dict[str, Any]: ...


def trial_state(trial: _Trial) -> str:
    """`trial`'s state as autoclf names it (a key of `STATES`; see the module docstring): Optuna's
    in lower case, or CUT_AT_DEADLINE for a finished trial the time budget cut after an epoch."""
    state = str(trial.state.name).lower()
    if (
        state in ("complete", "pruned")
        and TrialRecord.from_attrs(trial.user_attrs).stopped_by_deadline
    ):
        return CUT_AT_DEADLINE
    return state


def state_name(trial: _Trial) -> str:
    """`trial`'s state for people: `complete`, `cut at the deadline`, `pruned`, `failed`, …"""
    return STATES[trial_state(trial)]


def count_states(trials: Iterable[_Trial]) -> dict[str, int]:
    """Trials per `trial_state`, every state listed, in `STATES` order."""
    counts = dict.fromkeys(STATES, 0)
    for trial in trials:
        counts[trial_state(trial)] += 1
    return counts


def n_usable(counts: Mapping[str, int]) -> int:
    """Of `count_states`' counts, the usable results: complete or cut at the deadline."""
    return sum(counts.get(state, 0) for state in USABLE_STATES)


def counts_text(counts: Mapping[str, int]) -> str:
    """`3 complete, 2 cut at the deadline, 1 pruned`: the states held, by their names."""
    return ", ".join(f"{n} {STATES[s]}" for s, n in counts.items() if n) or "no trials"


def short_traceback(exc: BaseException) -> str:
    """`exc`'s traceback (with its causes) as text, at most TRACEBACK_CHARS characters: the
    last ones, where the innermost frames and the message are."""
    text = "".join(tracebacks.format_exception(exc))
    if len(text) <= TRACEBACK_CHARS:
        return text
    return f"… ({len(text) - TRACEBACK_CHARS} characters cut)\n{text[-TRACEBACK_CHARS:]}"
