"""The label audit: which labelled images look mislabelled (`autoclf audit SPEC`).

Confident learning (Northcutt et al. 2021) needs an out-of-sample probability for every image:
what a model that never saw the image's label thinks it is. So the audit cross-fits:

1. The configuration: the study's best trial's (`best_trial`, its best epoch count) when the
   spec's study exists and has one; else the spec's defaults (trial 0 of a new study:
   spec/warmstart.py `default_params`), for `train.epochs`. Either with `final.class_weighting`
   and on this command's device, as the final retrain would train it.
2. Every labelled image: train, val and test together. The test split is included because a
   wrong label there misleads every score the final model reports. That is safe because the
   audit's models are thrown away: nothing the audit trains or computes is stored with the
   study or reaches a model that is later tested (`run` with `final.audit_labels: true` only
   adds the findings to the report).
3. K stratified folds (seeded; fewer when a class has fewer than K images): per fold, the
   configuration trains on the other K−1 folds with the existing trainer (no validation, a
   fixed number of epochs, the schedule spanning them) and predicts the held-out fold.
4. cleanlab's `find_label_issues` (its reference implementation, `prune_by_noise_rate`) on the
   images that got probabilities, ranked by self-confidence: the held-out probability of the
   given label, lowest first. The suggested label is the most probable class.

Under a time budget (`--time`, or `run`'s share) a probe times `PROBE_STEPS` training steps first
(train/session.py), then the plan fits the folds to what is left: the wanted epochs, shortened to
`FEWER_EPOCHS`, then fewer folds (down to `MIN_FOLDS`), then fewer epochs (down to 1). A budget
that cannot fit even that is refused before any fold trains (SpecError: exit 2, saying how much is
needed). A fold runs only when it still fits (planned from the probe, then from the folds before
it); a fold still training when no further epoch fits is stopped, and its images get no
probabilities: a model stopped part-way is less sure of everything, and its images would be flagged
for that. The plan keeps `PLAN_MARGIN` over the probe, more than the search does: a fold dropped
for time leaves a K-th of the images unaudited, an epoch fewer costs little. The result names the
folds left out, and the report says which images were not audited.

Nothing here writes a file: the data folder is only read, and the report room writes the
findings wherever the caller says (report/audit.py).
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from optuna.trial import FrozenTrial

from automl_clf.data.batches import steps_per_epoch
from automl_clf.data.dataset import Dataset, SplitArrays, load_dataset
from automl_clf.data.preprocess import Decoding
from automl_clf.errors import DeadlineReached, SpecError, StorageError, StudyError
from automl_clf.final.allowance import Allowance
from automl_clf.final.retrain import final_config, on_device, trial_config
from automl_clf.outputs import check_outside
from automl_clf.search.budget import SLACK_S, Clock
from automl_clf.search.record import DEADLINE, TrialRecord
from automl_clf.search.storage import storage_faults
from automl_clf.search.study import best_trial, load_existing_study
from automl_clf.spec.config import TrialConfig
from automl_clf.spec.data import DataSpec
from automl_clf.spec.duration import format_duration
from automl_clf.spec.models import ResolvedSpec
from automl_clf.spec.resolve import resolve
from automl_clf.spec.space import FixedParams
from automl_clf.spec.warmstart import default_params
from automl_clf.train.device import resolve_device
from automl_clf.train.session import EVAL_STEP_SHARE, probe_step_times, train_config
from automl_clf.train.trainer import evaluate

AUDIT_FOLDS = 5  # folds by default: each model trains on 80 % of the images
MIN_FOLDS = 2
FEWER_EPOCHS = 3  # a budget shortens the epochs to this before it takes folds away
FOLD_OVERHEAD_S = 1.0  # per fold beyond its steps: building the model, its latency check
# Training steps the probe times: their mean, not the median of 4 a trial's plan takes, since a
# fold's time is the sum of its steps, stalls included. On 2 busy cores (1,437 digits, 8 px, a
# 2-block CNN) the median of 4 ranged from 0.6 to 4 times a fold's mean step, the mean of 20
# fell 16 to 24 % short of it.
PROBE_STEPS = 20
# The plan's margin over the probe: a fold dropped for time costs a K-th of the images their
# audit, an epoch fewer costs little, so the plan errs long.
PLAN_MARGIN = 0.5
N_SHOWN = 16  # issues whose thumbnails the result keeps for the report
SPLITS = ("train", "val", "test")  # what is audited: every labelled image (module docstring)

FoldState = Literal["done", "cut", "skipped"]


@dataclass(frozen=True)
class FoldRun:
    """One fold of the cross-fitting, as it went."""

    number: int  # 1-based
    of: int  # the folds in all
    n_images: int  # held out: what this fold's model predicts
    state: FoldState  # done; cut (stopped by the deadline); skipped (no time to start it)
    seconds: float = 0.0  # training and predicting


@dataclass(frozen=True)
class LabelIssue:
    """An image whose given label the held-out model doubts, by confident learning."""

    rank: int  # 1: the most likely mislabelled
    index: int  # into `AuditResult.paths`, `labels`, `probabilities`
    path: Path
    split: str
    given: str
    suggested: str  # the held-out model's most probable class
    self_confidence: float  # the held-out probability of the given label
    suggested_confidence: float  # … and of the suggested one


@dataclass
class AuditResult:
    """What the audit found, and how: the report's and the CSV's source."""

    classes: list[str]
    root: Path  # the data folder (never written to)
    paths: tuple[Path, ...]  # every labelled image, in the order of the arrays below
    splits: tuple[str, ...]  # each image's split
    labels: np.ndarray  # int64 (N,): the given labels
    probabilities: np.ndarray  # float32 (N, C) out-of-sample; NaN rows: not audited
    issues: list[LabelIssue]  # ranked, most likely mislabelled first
    folds: list[FoldRun]
    source: str  # which configuration cross-fitted, in words
    config: TrialConfig  # … and the configuration itself (epochs as trained)
    epochs: int
    seconds: float  # the audit's wall time, from its start
    thumbnails: list[np.ndarray] = field(default_factory=list)  # uint8 of issues[:N_SHOWN]
    notes: list[str] = field(default_factory=list)  # what differs from what was asked

    @property
    def audited(self) -> np.ndarray:
        """bool (N,): the images that got out-of-sample probabilities."""
        return ~np.isnan(self.probabilities).any(axis=1)

    @property
    def n_audited(self) -> int:
        return int(self.audited.sum())

    @property
    def unaudited(self) -> list[FoldRun]:
        """The folds whose images got no probabilities (cut or skipped by the budget)."""
        return [fold for fold in self.folds if fold.state != "done"]


OnFold = Callable[[FoldRun], None]


def audit_labels(
    spec: ResolvedSpec,
    *,
    time_s: float | None = None,
    folds: int = AUDIT_FOLDS,
    seed: int = 0,
    reserve_s: float = 0.0,
    started: float | None = None,
    clock: Clock = time.monotonic,
    dataset: Dataset | None = None,
    on_fold: OnFold | None = None,
    budget_share: float = 1.0,
) -> AuditResult:
    """Find the labelled images that look mislabelled; see the module docstring.

    What the CLI's `autoclf audit` and `run`'s `final.audit_labels` call, and what a benchmark
    calls on a spec to measure the finder.

    Args:
        time_s: the audit's wall-clock budget in seconds, counted from `started` (default:
            now); None: no budget, every fold trains the wanted epochs.
        folds: K of the K-fold cross-fitting (fewer when a class has fewer images).
        seed: the folds' assignment; the same seed and data give the same folds.
        reserve_s: seconds to leave before the deadline for the caller (writing the report).
        dataset: the spec's data set, already loaded (`run` has it); default: load it.
        on_fold: told each fold's outcome as it ends (a progress display).
        budget_share: the share of the command's --time that `time_s` is (`run` gives the
            audit `AUDIT_SHARE`), so that a refusal says which --time would do.

    Raises:
        SpecError: `folds` below 2, or a budget that cannot fit the smallest audit.
        DataError, StorageError: as loading the data or reading the study raise them.
    """
    if folds < MIN_FOLDS:
        raise SpecError(f"folds: cross-fitting needs at least {MIN_FOLDS} folds, got {folds}")
    start = clock() if started is None else started
    until = start + time_s if time_s is not None else None
    resolve_device(spec.train.device)  # a device this machine lacks: exit 2, before any work
    dataset = dataset if dataset is not None else load_dataset(spec.data)
    config, wanted, source = audit_config(spec)
    labelled, splits = _labelled(dataset, config)
    asked, notes = _fold_count(labelled.labels, folds)
    folds, epochs = asked, wanted
    pace = _Pace(len(labelled), config.train.batch_size)
    if until is not None:
        times = probe_step_times(config, dataset, steps=PROBE_STEPS)
        pace.step_s = statistics.mean(times) if times else 0.0
        left = until - clock() - reserve_s - SLACK_S
        folds, epochs = plan_audit(pace, wanted, asked, left, time_s or 0.0, budget_share)
        if folds < asked:
            notes.append(f"{folds} folds instead of {asked}, to fit the time budget")
        if epochs < wanted:
            notes.append(f"{epochs} epochs a fold instead of {wanted}, to fit the time budget")
    fold_of = assign_folds(labelled.labels, folds, seed)
    config = _with_epochs(config, epochs)
    allowance = Allowance(until, clock)
    probabilities = np.full((len(labelled), dataset.n_classes), np.nan, dtype=np.float32)
    runs = []
    for k in range(folds):
        held = np.flatnonzero(fold_of == k)
        run, held_out = _fold(
            config, dataset, labelled, held, k, folds, pace, allowance, reserve_s
        )
        if held_out is not None:
            probabilities[held] = held_out
        runs.append(run)
        if on_fold is not None:
            on_fold(run)
    issues = rank_issues(labelled, probabilities, splits, dataset.classes)
    return AuditResult(
        classes=dataset.classes,
        root=dataset.root,
        paths=labelled.paths,
        splits=splits,
        labels=labelled.labels,
        probabilities=probabilities,
        issues=issues,
        folds=runs,
        source=source,
        config=config,
        epochs=epochs,
        seconds=clock() - start,
        # copies, so the result holds no view of the whole decoded data set
        thumbnails=[np.array(labelled.pixels[issue.index]) for issue in issues[:N_SHOWN]],
        notes=notes,
    )


def check_out_folder(folder: Path, data: DataSpec) -> None:
    """Refuse an output folder inside the data folder: the audit never writes there (and a
    new folder in it would be read as a class by the next run).

    Raises:
        OutputError: naming both folders and what to do.
    """
    root = data.root if data.root is not None else data.manifest.parent if data.manifest else None
    check_outside(folder, "--out", data=root, example="--out audits/<name>")


def audit_config(spec: ResolvedSpec) -> tuple[TrialConfig, int, str]:
    """The configuration the audit cross-fits, the epochs it wants, and where it comes from
    (module docstring)."""
    trial, why = _best_of_study(spec)
    if trial is not None:
        config = trial_config(trial)
        epochs = TrialRecord.of(trial).best_epoch or config.train.epochs
        source = f"trial #{trial.number}, the best of study {spec.study.name!r} ({epochs} epochs)"
    else:
        config = resolve(spec, FixedParams(default_params(spec), strict=False))
        epochs = config.train.epochs
        source = f"the spec's defaults ({why}; {epochs} epochs)"
    return on_device(final_config(config, spec.final), spec.train.device), epochs, source


def _best_of_study(spec: ResolvedSpec) -> tuple[FrozenTrial | None, str]:
    """The spec's study's best trial, or None and why there is none. A study that cannot be
    read (a damaged database) is an error, not a reason to fall back on the defaults.

    Raises:
        StorageError: as reading the study raises it.
    """
    storage, name = str(spec.study.storage), str(spec.study.name)
    try:
        with storage_faults(storage):
            study = load_existing_study(storage, name)
    except StorageError:
        raise
    except StudyError:
        return None, f"no study {name!r} yet"
    if len(study.directions) > 1:
        return None, f"study {name!r} has several objectives, so no single best trial"
    try:
        with storage_faults(storage):
            return best_trial(study), ""
    except StorageError:
        raise
    except StudyError:
        return None, f"study {name!r} has no usable trial yet"


def assign_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each image's fold (0 … folds−1): stratified by label, shuffled by `seed`."""
    from sklearn.model_selection import StratifiedKFold

    fold_of = np.zeros(len(labels), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a class smaller than `folds`: some folds lack it
        warnings.simplefilter("ignore", UserWarning)
        for k, (_, held) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
            fold_of[held] = k
    return fold_of


def rank_issues(
    labelled: SplitArrays, probabilities: np.ndarray, splits: tuple[str, ...], classes: list[str]
) -> list[LabelIssue]:
    """cleanlab's label issues among the images with probabilities, by self-confidence."""
    from cleanlab.filter import find_label_issues

    audited = np.flatnonzero(~np.isnan(probabilities).any(axis=1))
    if len(audited) == 0:
        return []
    labels, probs = labelled.labels[audited], probabilities[audited].astype(np.float64)
    probs /= probs.sum(axis=1, keepdims=True)  # float32 softmax sums to 1 ± 1e-7; cleanlab checks
    with warnings.catch_warnings():  # "may not flag all label issues in class …" of tiny classes
        warnings.simplefilter("ignore", UserWarning)
        ranked = find_label_issues(
            labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1
        )
    issues = []
    for rank, position in enumerate(ranked, start=1):
        i, row = int(audited[position]), probs[position]
        given, suggested = int(labels[position]), int(row.argmax())
        issues.append(
            LabelIssue(
                rank=rank,
                index=i,
                path=labelled.paths[i],
                split=splits[i],
                given=classes[given],
                suggested=classes[suggested],
                self_confidence=float(row[given]),
                suggested_confidence=float(row[suggested]),
            )
        )
    return issues


@dataclass
class _Pace:
    """What a fold costs, from the probe and then from the folds that ran (`correct`)."""

    n_images: int
    batch_size: int
    step_s: float = 0.0  # one training step, probed; 0 without a budget
    scale: float = 1.0  # measured / planned, as the last fold went

    def train_s(self, folds: int, epochs: int) -> float:
        """Training one fold's model on the other folds for `epochs`."""
        n_train = self.n_images - math.ceil(self.n_images / folds)
        return epochs * steps_per_epoch(n_train, self.batch_size) * self.step_s * self.scale

    def predict_s(self, folds: int) -> float:
        """Predicting one fold's images (forward only)."""
        batches = self.n_images / folds / self.batch_size
        return batches * EVAL_STEP_SHARE * self.step_s * self.scale

    def fold_s(self, folds: int, epochs: int) -> float:
        """One fold: training, predicting, and the fixed cost of a model (no margin)."""
        return self.train_s(folds, epochs) + self.predict_s(folds) + FOLD_OVERHEAD_S

    def correct(self, planned_s: float, measured_s: float) -> None:
        """Plan the next folds at the pace of this one (`measured_s` for `planned_s`)."""
        if planned_s > 0 and measured_s > 0:
            self.scale *= measured_s / planned_s


@dataclass(frozen=True)
class _Until:
    """A trainer `Deadline` (train/trainer.py) at a fixed time: a fold trains until it is done
    or no further epoch fits. Unlike a retrain's (final/allowance.py `RetrainDeadline`) it
    does not give up early on a slow start: on a busy machine the pace of a fold's first steps
    says little, and the time a fold would leave is of no use to the folds after it, which are
    as long."""

    at: float
    clock: Clock

    def fits(self, seconds: float) -> bool:
        return self.clock() + seconds <= self.at

    def passed(self) -> bool:
        return self.clock() > self.at


def plan_audit(
    pace: _Pace, wanted: int, folds: int, left_s: float, budget_s: float, share: float = 1.0
) -> tuple[int, int]:
    """The folds and epochs that fit `left_s` of the audit's `budget_s` seconds (module
    docstring's order of cuts); `share`: of the command's --time (`audit_labels`).

    Raises:
        SpecError: not even `MIN_FOLDS` folds of one epoch fit; says what would.
    """

    def fits(k: int, e: int) -> bool:
        return k * pace.fold_s(k, e) * (1.0 + PLAN_MARGIN) <= left_s

    fewer = min(wanted, FEWER_EPOCHS)
    for epochs in range(wanted, fewer - 1, -1):
        if fits(folds, epochs):
            return folds, epochs
    for k in range(folds - 1, MIN_FOLDS - 1, -1):
        if fits(k, fewer):
            return k, fewer
    for epochs in range(fewer - 1, 0, -1):
        if fits(MIN_FOLDS, epochs):
            return MIN_FOLDS, epochs
    need = MIN_FOLDS * pace.fold_s(MIN_FOLDS, 1) * (1.0 + PLAN_MARGIN)
    spent = max(budget_s - left_s, 0.0)
    part = f" ({share:.0%} of --time)" if share < 1.0 else ""
    raise SpecError(
        f"a time budget of {format_duration(budget_s)}{part} is too small for the label "
        f"audit: starting took {format_duration(spent)}, and {MIN_FOLDS} folds of one epoch "
        f"each on {pace.n_images} images take about {format_duration(need)}; give at least "
        f"--time {math.ceil((spent + need) * 1.2 / share)}s"
    )


def _labelled(dataset: Dataset, config: TrialConfig) -> tuple[SplitArrays, tuple[str, ...]]:
    """Every labelled image (`SPLITS`) decoded as `config` decodes, and each one's split."""
    arrays = dataset.arrays(Decoding.of(config.data))
    parts = [arrays[name] for name in SPLITS]
    splits = tuple(name for name, part in zip(SPLITS, parts, strict=True) for _ in part.paths)
    return SplitArrays.concat(*parts), splits


def _fold_count(labels: np.ndarray, folds: int) -> tuple[int, list[str]]:
    """`folds`, fewer when the smallest class has fewer images (each fold should hold every
    class), never below `MIN_FOLDS`."""
    smallest = int(np.bincount(labels)[np.unique(labels)].min())
    if smallest >= folds:
        return folds, []
    fewer = max(MIN_FOLDS, smallest)
    return fewer, [f"{fewer} folds instead of {folds}: the smallest class has {smallest} images"]


def _with_epochs(config: TrialConfig, epochs: int) -> TrialConfig:
    """`config` training `epochs`, its learning-rate schedule spanning them."""
    train = config.train.model_copy(update={"epochs": epochs})
    return config.model_copy(update={"train": train})


def _fold(
    config: TrialConfig,
    dataset: Dataset,
    labelled: SplitArrays,
    held: np.ndarray,
    k: int,
    folds: int,
    pace: _Pace,
    allowance: Allowance,
    reserve_s: float,
) -> tuple[FoldRun, np.ndarray | None]:
    """Fold `k`: train on the others, predict `held`; its probabilities, or None when the
    budget left no time to start it or cut it."""
    epochs = config.train.epochs
    planned = pace.fold_s(folds, epochs)
    what = f"fold {k + 1} of {folds} ({len(held)} images)"
    if not allowance.allows(what, planned, reserve_s=reserve_s):
        return FoldRun(k + 1, folds, len(held), "skipped"), None
    train = labelled.take(np.setdiff1d(np.arange(len(labelled)), held))
    deadline = None
    if allowance.until is not None:
        deadline = _Until(allowance.until - reserve_s - pace.predict_s(folds), allowance.clock)
    started = allowance.clock()
    try:
        trained = train_config(
            config, dataset, train_on=train, validate_on=None, deadline=deadline
        )
        cut = trained.fit.stopped_by == DEADLINE
    except DeadlineReached:  # cut inside its first epoch
        cut = True
    seconds = allowance.clock() - started
    if cut:
        return FoldRun(k + 1, folds, len(held), "cut", seconds), None
    device = resolve_device(config.train.device)
    result = evaluate(trained.fit.model, labelled.take(held), trained.preprocessing, device)
    seconds = allowance.clock() - started
    pace.correct(planned, seconds)
    return FoldRun(k + 1, folds, len(held), "done", seconds), result.probabilities
