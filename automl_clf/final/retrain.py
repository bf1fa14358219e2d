"""The final model: the chosen trial (or the top K, averaged) retrained or as searched, then
evaluated once on the held-out test split.

Members. The best complete trial, or `--trial N`; with `final.ensemble: K` the best K complete
feasible trials of a single-objective study, best first (fewer when the study holds fewer, and
the result says so). Each member is

- retrained (`final.retrain: always`, and `auto` unless the caller has no time for it): on
  train+val (or train) for the trial's best epoch count, with the final section's class
  weighting (`final_config`: the configuration that runs is the one the export records). With
  `final.seeds > 1` it trains once per seed (train only, so validation stays held out), keeps
  the best on validation by the study's objective and reports the spread; or
- taken as searched (`never`): the trial's configuration rebuilt and its best-epoch weights, kept
  by the search beside the trial (train/weights.py), loaded after checking they are the file the
  trial recorded. Nothing trains; the configuration is the trial's own.

With several members the final model is their `Ensemble` (final/ensemble.py): the mean of their
probabilities. Before the test, its temperature is fitted on validation predictions it did not
train on, and the out-of-distribution threshold taken from them (final/calibration.py says which
predictions those are for each kind of member). The test split is touched here and nowhere else,
by the final model only (calibrated as it is exported, plainly, with the spec's test-time
augmentation when asked, and member 0 alone beside an ensemble). The
export's `spec.yaml` is made and checked before any training, so a spec that cannot be written
fails in seconds, not after the retrain.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial
from pydantic import ValidationError
from torch import nn

from automl_clf.data.batches import OnStep, steps_per_epoch
from automl_clf.data.dataset import Dataset, SplitArrays, load_dataset
from automl_clf.data.preprocess import Decoding, Preprocessing
from automl_clf.errors import DeadlineReached, SpecError, StudyError
from automl_clf.final.allowance import Allowance
from automl_clf.final.calibration import (
    CalibrationRecord,
    HeldOut,
    OutOfDistributionRecord,
    calibrated,
    calibration_record,
    log_loss,
    mix,
    ood_record,
    rescale,
)
from automl_clf.final.ensemble import Ensemble
from automl_clf.final.manifest import validation_problems
from automl_clf.final.provenance import resolved_spec_yaml
from automl_clf.final.selection import Candidate, Selection, select_ensemble
from automl_clf.final.tta import evaluate_tta, n_tta_views
from automl_clf.models.factory import build_model, count_parameters
from automl_clf.search.budget import SLACK_S, DataSizes, TrialTiming, estimate_retrain_s
from automl_clf.search.record import (
    DEADLINE,
    STATES,
    USABLE,
    USABLE_STATES,
    TrialRecord,
    trial_state,
)
from automl_clf.search.study import best_trial, check_compatible, ranked_trials
from automl_clf.spec.config import TrialConfig
from automl_clf.spec.models import FinalSpec, Spec
from automl_clf.train.device import resolve_device
from automl_clf.train.metrics import EvalResult, summarise
from automl_clf.train.session import train_config
from automl_clf.train.trainer import EpochResult, evaluate
from automl_clf.train.weights import (
    RETRAIN_INSTEAD,
    load_probabilities,
    load_weights,
    relocated,
    weights_problem,
)
from automl_clf.versions import TRIAL_CONFIG, __version__


@dataclass(frozen=True)
class RetrainProgress:
    """Where the final step stands, for a progress display (`retrain(on_progress=...)`).

    Stages in order: `train` (each run: a retrained member, once per seed), `test` (the final
    model on the test split), `export` (told by the caller that writes it). Counts are epochs:
    of the run (`epoch` of `epochs`) and over every run of the retrain (`done` of `total`).
    """

    stage: Literal["train", "test", "export"]
    trial: int | None = None  # the member's trial number
    seed: int | None = None
    epoch: int = 0  # epochs this run has finished
    epochs: int = 0  # epochs this run trains at most
    done: int = 0  # epochs finished over every run
    total: int = 0  # epochs over every run
    epoch_s: float | None = None  # set when an epoch has just ended: its seconds
    step: int = 0  # batches of the running epoch done (told at most every half second)
    n_steps: int = 0


OnProgress = Callable[[RetrainProgress], None]


@dataclass(frozen=True)
class SeedRun:
    """One retrain of the final configuration; `val` is None when val was trained on (or when
    the member was not retrained)."""

    seed: int
    val: EvalResult | None


@dataclass
class Member:
    """One model of the final model: a trial's configuration with the weights exported."""

    trial: FrozenTrial
    config: TrialConfig  # what trained these weights: the final one, or the trial's own
    model: nn.Module
    preprocessing: Preprocessing  # what this member was trained with
    augmentation: dict[str, Any] | None  # as train/session.py records it
    n_params: int
    epochs: int  # epochs trained: the retrain's, or the trial's best epoch
    train_on: str  # the splits these weights saw
    retrained: bool  # False: the trial's own best-epoch weights
    seed: int  # the chosen (exported) seed
    seed_runs: list[SeedRun]  # every seed trained, in order
    history: list[EpochResult] = field(default_factory=list)  # the retrain's epochs (the report)


@dataclass
class FinalResult:
    members: list[Member]  # best first; member 0 is what model.safetensors holds
    model: nn.Module  # what was tested and is exported: member 0's model, or their Ensemble
    test: EvalResult
    test_data: SplitArrays
    dataset: Dataset
    spec_yaml: str  # the export's spec.yaml (final/provenance.py)
    tta: tuple[str, ...] = ()  # the test-time augmentation views of `test_tta`
    test_tta: EvalResult | None = None
    test_single: EvalResult | None = None  # member 0 alone, beside an ensemble's result
    notes: list[str] = field(default_factory=list)  # what differs from what the spec asked
    selection: Selection | None = None  # how an ensemble's members and weights were chosen
    # what the time budget left out (final/allowance.py), added to by the export too
    skipped: list[str] = field(default_factory=list)
    # the temperature `served` divides the logits by (None: final.calibrate none, or no
    # validation predictions); `test` and `test_tta` are calibrated, `test_uncalibrated` is
    # the same test predictions before it
    calibration: CalibrationRecord | None = None
    test_uncalibrated: EvalResult | None = None
    ood: OutOfDistributionRecord | None = None  # the out-of-distribution threshold

    @property
    def first(self) -> Member:
        return self.members[0]

    @property
    def trial(self) -> FrozenTrial:
        return self.first.trial

    @property
    def preprocessing(self) -> Preprocessing:
        """The input of `model` (an ensemble re-normalises inside for each member)."""
        return self.first.preprocessing

    @property
    def is_ensemble(self) -> bool:
        return len(self.members) > 1

    @property
    def served(self) -> nn.Module:
        """What the export serves: `model`, its logits divided by the fitted temperature."""
        return calibrated(self.model, self.calibration)


def trial_config(trial: FrozenTrial) -> TrialConfig:
    """The configuration a trial trained, as it stored it; one an older autoclf stored is read
    through the trial config's migrations (automl_clf/versions.py).

    Raises:
        StudyError: none stored; a newer autoclf stored it (a version this one does not read);
            or it does not validate even once migrated (an edited study, or a missing migration).
    """
    record = TrialRecord.of(trial)
    where = f"trial #{trial.number}"
    if record.config is None:
        raise StudyError(f"{where} stores no configuration; it was not made by autoclf")
    config = TRIAL_CONFIG.upgrade(record.config, record.config_version, where)
    try:
        return TrialConfig.model_validate(config)
    except ValidationError as exc:
        raise StudyError(
            f"{where}'s configuration (trial config version {record.config_version or 1}) is "
            f"not one this autoclf ({__version__}) can read: {validation_problems(exc)}. A study "
            "made by autoclf stays readable by every later one, so either the study was edited "
            "or this is a bug (please report it)"
        ) from None


def with_study_files(trial: FrozenTrial, artifacts: Path | None) -> FrozenTrial:
    """`trial` reading the files it kept (best-epoch weights, validation probabilities) from the
    study's artifacts folder where the absolute paths it recorded are gone: a study copied or
    moved with its folder (train/weights.py `relocated`). A copy; the study is unchanged."""
    if artifacts is None:
        return trial
    record = TrialRecord.of(trial)
    found = TrialRecord(
        weights=relocated(record.weights, artifacts),
        val_probabilities=relocated(record.val_probabilities, artifacts),
    )
    moved = copy.copy(trial)
    moved.user_attrs = {**trial.user_attrs, **found.attrs()}
    return moved


def on_device(config: TrialConfig, device: str) -> TrialConfig:
    """`config` trained on `device`: the device is where a command runs, not part of what a
    trial found, so a retrain runs where its command says."""
    return config.model_copy(update={"train": config.train.model_copy(update={"device": device})})


def final_config(config: TrialConfig, final: FinalSpec) -> TrialConfig:
    """The configuration the final retrain runs: the trial's, with `final.class_weighting`
    (unless it says `searched`). Returned whole so that model.json, spec.yaml and the report
    record what ran, not what the trial searched."""
    if final.class_weighting == "searched":
        return config
    train = config.train.model_copy(update={"class_weighting": final.class_weighting})
    return config.model_copy(update={"train": train})


def retrain(
    spec: Spec,
    study: optuna.Study,
    trial_number: int | None = None,
    *,
    retrain_members: bool | int | None = None,
    on_progress: OnProgress | None = None,
    allowance: Allowance | None = None,
) -> FinalResult:
    """Make the final model (see the module docstring) and evaluate it on the test split.

    Args:
        trial_number: export this complete trial instead of the best (needs final.ensemble 1).
        retrain_members: whether to retrain, or at most how many members (best first; the
            others as searched); None follows `final.retrain` (`auto` and `always` retrain).
        on_progress: told each run's start, each epoch's end, the batches inside a long
            epoch, and the test (`RetrainProgress`): a display's bar and ETA.
        allowance: the time left under a budget (final/allowance.py): a member is retrained
            only when its retrain fits (planned from its trial's pace, corrected by the
            retrains before it), one that cannot finish in time is exported as searched, and
            member 0's own test and the test-time augmentation run only when they fit. None:
            no deadline, nothing is skipped.

    Raises:
        SpecError: --trial with final.ensemble > 1.
        StudyError: no complete trial; a member that is not retrained (or may fall back to
            its trial's weights) has its best-epoch weights missing or changed.
    """
    allowance = allowance if allowance is not None else Allowance.unlimited()
    pool, notes = choose_members(study, spec, trial_number)
    pool = [with_study_files(trial, spec.study.artifacts) for trial in pool]
    if retrain_members is None:
        retrain_members = spec.final.retrain != "never"
    # this command's device (--device), not where the trials ran: checked before any training
    device = resolve_device(spec.train.device)
    dataset = load_dataset(spec.data)
    check_compatible(study, spec, dataset)
    pool = _sharing_decoding(pool, notes)
    selection = None
    if len(pool) > 1 and spec.final.ensemble_weights == "selected":
        pool, selection = _select_members(spec, pool, dataset, device, notes)
    n_again = len(pool) if retrain_members is True else min(int(retrain_members), len(pool))
    again = [k < n_again for k in range(len(pool))]
    _check_weights_kept([t for t, fresh in zip(pool, again, strict=True) if not fresh], spec)
    planned_config = _member_config(pool[0], again[0], spec)
    spec_yaml = _spec_yaml(spec, planned_config, pool)  # a spec that cannot be written fails now
    n_epochs = sum(
        _best_epoch(TrialRecord.of(t), trial_config(t))
        for t, fresh in zip(pool, again, strict=True)
        if fresh
    )
    told = _Told(on_progress, total=n_epochs * spec.final.seeds)
    members = _make_members(spec, pool, again, dataset, told, allowance, notes)
    if members[0].config != planned_config:  # member 0 fell back to its trial's weights
        spec_yaml = _spec_yaml(spec, members[0].config, pool)
    told.stage("test")
    weights = None if selection is None else [selection.weights[i] for i in selection.chosen]
    return _tested(spec, members, weights, dataset, device, allowance, spec_yaml, notes, selection)


def _tested(
    spec: Spec,
    members: list[Member],
    weights: list[float] | None,
    dataset: Dataset,
    device: torch.device,
    allowance: Allowance,
    spec_yaml: str,
    notes: list[str],
    selection: Selection | None,
) -> FinalResult:
    """The final model of `members` (weighted when an ensemble), tested once; member 0 alone
    and the test-time augmentation as time allows."""
    first = members[0]
    model: nn.Module = first.model
    if len(members) > 1:
        model = Ensemble([m.model for m in members], [m.preprocessing for m in members], weights)
    model.to(device)
    splits = dataset.arrays(Decoding.of(first.config.data))
    test_data = splits["test"]
    pre = first.preprocessing
    with allowance.timed("test"):
        held_out = _held_out(members, weights, splits["val"], dataset, device)
        calibration = None
        if spec.final.calibrate == "temperature" and held_out is not None:
            calibration = calibration_record(held_out)
        ood = ood_record(held_out, calibration, spec.final.ood_percentile) if held_out else None
        served = calibrated(model, calibration)
        test = evaluate(served, test_data, pre, device)
    after = allowance.reserve_s("write", "latency")
    single = None
    alone = f"trial #{first.trial.number} alone on the test split"
    if len(members) > 1 and allowance.allows(
        alone, allowance.estimate("test") / len(members), reserve_s=after
    ):
        single = evaluate(first.model, test_data, pre, device)
    tta = tuple(spec.final.tta)
    test_tta = None
    n_views = n_tta_views(tta)
    what = f"test-time augmentation ({n_views} views)"
    if tta and allowance.allows(what, allowance.estimate("test") * n_views, reserve_s=after):
        test_tta = evaluate_tta(served, test_data, pre, device, tta)
    if held_out is None:
        notes.append(
            "no validation predictions the final model did not train on: it is exported "
            "uncalibrated and without an out-of-distribution threshold"
        )
    return FinalResult(
        members,
        model,
        test,
        test_data,
        dataset,
        spec_yaml=spec_yaml,
        tta=tta if test_tta is not None else (),
        test_tta=test_tta,
        test_single=single,
        notes=notes,
        selection=selection,
        skipped=list(allowance.skipped),
        calibration=calibration,
        test_uncalibrated=_uncalibrated(test, calibration),
        ood=ood,
    )


def _uncalibrated(test: EvalResult, calibration: CalibrationRecord | None) -> EvalResult | None:
    """The calibrated test result as it was before the temperature (same images, same argmax):
    the logits multiplied back by T."""
    if calibration is None:
        return None
    probabilities = rescale(test.probabilities, calibration.temperature)
    loss = log_loss(probabilities, test.labels) if len(test.labels) else 0.0
    return summarise(loss, probabilities, test.labels)


def _held_out(
    members: list[Member],
    weights: list[float] | None,
    val: SplitArrays,
    dataset: Dataset,
    device: torch.device,
) -> HeldOut | None:
    """The final model's validation predictions from weights that did not train on val, per
    member (final/calibration.py), mixed with the ensemble's weights; None when a member has
    none (its trial kept neither probabilities nor weights) or there is no validation split."""
    if len(val) == 0:
        return None
    parts, sources = [], []
    for member in members:
        found = _member_held_out(member, val, dataset, device)
        if found is None:
            return None
        parts.append(found[0])
        sources.append(found[1])
    if len(members) == 1:
        fitted_on = f"the validation split: {sources[0]}"
    else:
        each = "; ".join(f"#{m.trial.number} {s}" for m, s in zip(members, sources, strict=True))
        fitted_on = f"the validation split, the members' predictions mixed by weight: {each}"
    shares = weights if weights is not None else [1.0] * len(members)
    return HeldOut(mix(parts, shares), val.labels, fitted_on)


def _member_held_out(
    member: Member, val: SplitArrays, dataset: Dataset, device: torch.device
) -> tuple[np.ndarray, str] | None:
    """One member's validation probabilities that its weights did not train on, and whose they
    are; None when there are none."""
    if member.retrained and "val" not in member.train_on.split("+"):
        run = next(r for r in member.seed_runs if r.seed == member.seed)
        if run.val is not None and run.val.probabilities.shape == (len(val), dataset.n_classes):
            return run.val.probabilities, "the retrained weights' own predictions"
        own = evaluate(member.model.to(device), val, member.preprocessing, device)
        return own.probabilities, "the retrained weights' own predictions"
    kept = _trial_val_probabilities(member.trial, val, dataset, device)
    if not member.retrained:
        return None if kept is None else (kept, "the exported weights' own predictions")
    inherited = (
        f"trial #{member.trial.number}'s own predictions (as searched, trained on train; the "
        f"member retrained on {member.train_on} inherits its temperature)"
    )
    return None if kept is None else (kept, inherited)


def _trial_val_probabilities(
    trial: FrozenTrial, val: SplitArrays, dataset: Dataset, device: torch.device
) -> np.ndarray | None:
    """What the trial's best epoch predicted for the validation split: kept by the search, else
    computed from its kept weights; None when it kept neither."""
    record = TrialRecord.of(trial)
    probabilities = load_probabilities(record.val_probabilities, (len(val), dataset.n_classes))
    if probabilities is None and weights_problem(record.weights) is None:
        member = _as_searched(trial, trial_config(trial), dataset)
        model = member.model.to(device)
        probabilities = evaluate(model, val, member.preprocessing, device).probabilities
    return probabilities


def _make_members(
    spec: Spec,
    pool: list[FrozenTrial],
    again: list[bool],
    dataset: Dataset,
    told: _Told,
    allowance: Allowance,
    notes: list[str],
) -> list[Member]:
    """Each member, best first: retrained when asked and its plan fits in what is left (with
    no margin: one that runs slow gives up as soon as its pace shows it), else as searched.

    A retrain's plan is its trial's measured pace scaled to the retrain's data and epochs
    (search/budget.py), multiplied by how the retrains so far compared with their plans (a
    retrain on a busy machine, or on more threads than the trial, is not a trial); before the
    first, by the allowance's `retrain_pace`, as the search's reserve planned it."""
    sizes = _data_sizes(dataset, Decoding.of(trial_config(pool[0]).data))
    spent = planned_so_far = 0.0
    members = []
    for trial, fresh in zip(pool, again, strict=True):
        member = None
        if fresh:
            plan = _planned_retrain_s(trial, spec, sizes)
            pace = spent / planned_so_far if planned_so_far > 0 else allowance.retrain_pace
            what = f"retraining trial #{trial.number}"
            # `always` retrains whatever the time; without kept weights there is nothing to fall
            # back to, so such a member retrains regardless too
            kept = weights_problem(TrialRecord.of(trial).weights) is None
            timed = kept and spec.final.retrain == "auto"
            limit = allowance if timed else Allowance.unlimited()
            after = allowance.reserve_s() + SLACK_S  # as the job planned it (members_to_retrain)
            # without the margin: a retrain that runs slow gives up as soon as its pace shows
            # it (RetrainDeadline), costing the export's optional parts at most, while one left
            # out wastes its time for sure (photos at 180 s beside 4 busy loops: 35 s of
            # retrain left out with 38 s left, the job ended at 0.85 of its budget)
            if limit.allows(what, plan * pace, reserve_s=after, margin=False):
                config = _member_config(trial, True, spec)
                started = allowance.clock()
                member = _retrained(spec, trial, config, dataset, told, limit, sizes)
                spent += allowance.clock() - started
                planned_so_far += plan
                if member is None:
                    notes.append(
                        f"the retrain of trial #{trial.number} could not finish before the "
                        "time budget's deadline: it is exported as searched (its best-epoch "
                        "weights)"
                    )
        if member is None:
            member = _as_searched(trial, trial_config(trial), dataset)
        members.append(member)
    return members


def _member_config(trial: FrozenTrial, retrained: bool, spec: Spec) -> TrialConfig:
    """What trains a member: the final configuration on this command's device when it is
    retrained, the trial's own when it is taken as searched."""
    if not retrained:
        return trial_config(trial)
    return on_device(final_config(trial_config(trial), spec.final), spec.train.device)


def _data_sizes(dataset: Dataset, decoding: Decoding) -> DataSizes:
    splits = dataset.arrays(decoding)
    return DataSizes(len(splits["train"]), len(splits["val"]), len(splits["test"]))


def _planned_retrain_s(trial: FrozenTrial, spec: Spec, sizes: DataSizes) -> float:
    """Seconds a retrain of `trial` is planned to take (all its seeds): its trial's measured
    pace scaled to the retrain's data and epochs; 0 when the trial measured none."""
    timing = TrialTiming.of(TrialRecord.of(trial))
    if timing is None:
        return 0.0
    once = estimate_retrain_s(timing, sizes, train_on=spec.final.train_on)
    return once * spec.final.seeds


def _sharing_decoding(pool: list[FrozenTrial], notes: list[str]) -> list[FrozenTrial]:
    """The trials of `pool` that decode images as the best one does (one input feeds every
    member of an ensemble); the others are left out, and a note says so."""
    first = Decoding.of(trial_config(pool[0]).data)
    kept = [t for t in pool if Decoding.of(trial_config(t).data) == first]
    left = [t for t in pool if t not in kept]
    if left:
        numbers = ", ".join(f"#{t.number}" for t in left)
        notes.append(
            f"trial(s) {numbers} decode images otherwise than trial #{pool[0].number} (image "
            "size, channels or resize), so they cannot share its input: left out of the ensemble"
        )
    return kept


def _select_members(
    spec: Spec,
    pool: list[FrozenTrial],
    dataset: Dataset,
    device: torch.device,
    notes: list[str],
) -> tuple[list[FrozenTrial], Selection | None]:
    """The members of the ensemble and their weights, chosen on the validation split
    (final/selection.py); the pool's trials with weight 0 are left out. Probabilities come from
    what each trial kept, else from its best-epoch weights; a trial with neither is left out."""
    val = dataset.arrays(Decoding.of(trial_config(pool[0]).data))["val"]
    candidates, usable = [], []
    for trial in pool:
        record = TrialRecord.of(trial)
        probabilities = _trial_val_probabilities(trial, val, dataset, device)
        if probabilities is None:
            notes.append(
                f"trial #{trial.number} kept neither its validation probabilities nor its "
                "weights, so the ensemble selection could not weigh it: left out"
            )
            continue
        size = record.n_params * 4 / 1e6 if record.n_params is not None else None
        candidates.append(Candidate(trial.number, probabilities, record.latency_ms, size))
        usable.append(trial)
    if len(candidates) < 2:
        return usable[:1], None
    final = spec.final
    selection = select_ensemble(
        candidates,
        val.labels,
        objective=spec.study.metric,
        direction=spec.study.resolved_direction,
        max_latency_ms=final.max_latency_ms,
        max_size_mb=final.max_size_mb,
    )
    notes.append(selection.summary())
    chosen = [usable[i] for i in selection.chosen]
    return chosen, selection


def _check_weights_kept(as_searched: list[FrozenTrial], spec: Spec) -> None:
    """Before anything slow: a member taken as searched whose best-epoch weights are missing
    or changed fails in seconds, not after the other members' retrains."""
    for trial in as_searched:
        problem = weights_problem(TrialRecord.of(trial).weights)
        if problem is not None:
            raise StudyError(
                f"cannot export trial #{trial.number} as searched (final.retrain: "
                f"{spec.final.retrain}): {problem}; {RETRAIN_INSTEAD}"
            )


def choose_members(
    study: optuna.Study, spec: Spec, trial_number: int | None = None
) -> tuple[list[FrozenTrial], list[str]]:
    """The trials of the final model, best first, and a note when there are fewer than asked.

    Member 0 is `best_trial` (or trial N), so an ensemble's first member is the model a K=1
    export would have used; the others follow in `ranked_trials`' order (complete trials and
    those a time budget cut after an epoch, by the study's objective; ties: the earlier trial).
    """
    k = spec.final.ensemble
    if trial_number is not None:
        if k > 1:  # what was asked contradicts itself: a usage error, like a bad spec
            raise SpecError(
                f"--trial {trial_number} exports one trial, but final.ensemble is {k} (the top "
                f"{k} trials of the study); set final.ensemble: 1 to export trial "
                f"#{trial_number} alone, or leave out --trial"
            )
        return [_complete_trial(study, trial_number)], []
    best = best_trial(study)  # says why there is none (or that several objectives need --trial)
    if k == 1:
        return [best], []
    trials = ranked_trials(study)[:k]  # best first, as best_trial ranks them
    notes = []
    if len(trials) < k:
        what = (
            f"the ensemble averages those {len(trials)}"
            if len(trials) > 1
            else f"trial #{best.number} is exported alone"
        )
        notes.append(
            f"final.ensemble is {k}, but study {study.study_name!r} holds only {len(trials)} "
            f"usable trial(s) ({USABLE}, feasible): {what}"
        )
    return trials, notes


def _spec_yaml(spec: Spec, config: TrialConfig, trials: list[FrozenTrial]) -> str:
    """spec.yaml: member 0 fixed. A one-point spec cannot hold an ensemble of other trials, so
    there it says `final.ensemble: 1` and its header names the members (model.json has them)."""
    study_name = spec.study.name or "study"
    note = None
    if len(trials) > 1:
        final = spec.final.model_copy(update={"ensemble": 1})
        spec = spec.model_copy(update={"final": final})
        numbers = ", ".join(f"#{t.number}" for t in trials)
        note = (
            f"Member 0 of an ensemble of {len(trials)} trials ({numbers}); model.json's "
            "`members` records each one."
        )
    return resolved_spec_yaml(spec, config, study=study_name, trial=trials[0].number, note=note)


def _retrained(
    spec: Spec,
    trial: FrozenTrial,
    config: TrialConfig,
    dataset: Dataset,
    told: _Told,
    allowance: Allowance,
    sizes: DataSizes,
) -> Member | None:
    """Retrain `config` for the trial's best epoch count, over `final.seeds` (module
    docstring); None when the allowance's deadline cut every run (the caller exports the trial
    as searched). A run the deadline cuts is dropped: a retrain is worth something only whole."""
    record = TrialRecord.of(trial)
    epochs = _best_epoch(record, config)
    both = spec.final.train_on == "train+val"
    replay = record.lr_history if config.train.schedule == "plateau" else None
    n_images = sizes.n_train + (sizes.n_val if both else 0)
    steps = epochs * steps_per_epoch(n_images, config.train.batch_size)
    runs: list[SeedRun] = []
    chosen = None  # (run, trained): only the best model is kept in memory
    for seed in range(spec.final.seed, spec.final.seed + spec.final.seeds):
        on_epoch, on_step = told.run(trial.number, seed, epochs)
        deadline = allowance.retrain_deadline(steps, reserve_s=allowance.reserve_s())
        try:
            trained = train_config(
                config,
                dataset,
                train_on=("train", "val") if both else ("train",),
                validate_on=None if both else "val",
                max_epochs=epochs,
                lr_replay=replay,
                seed=seed,
                on_epoch=on_epoch,
                on_step=on_step,
                deadline=deadline,
            )
        except DeadlineReached:  # cut inside its first epoch
            break
        if trained.fit.stopped_by == DEADLINE:
            break
        runs.append(SeedRun(seed, trained.fit.best.val))
        if chosen is None or _better_on_val(runs[-1], chosen[0], spec):
            chosen = (runs[-1], trained)
    if chosen is None:
        return None
    trained = chosen[1]
    return Member(
        trial,
        config,
        trained.fit.model,
        trained.preprocessing,
        trained.augmentation,
        trained.n_params,
        epochs,
        spec.final.train_on,
        retrained=True,
        seed=chosen[0].seed,
        seed_runs=runs,
        history=trained.fit.history,
    )


class _Told:
    """Counts the retrain's epochs over its runs and tells `on_progress` (nobody without one)."""

    def __init__(self, on_progress: OnProgress | None, total: int) -> None:
        self.on_progress = on_progress
        self.now = RetrainProgress("train", total=total)

    def tell(self, **changes: Any) -> None:
        self.now = replace(self.now, **changes)
        if self.on_progress is not None:
            self.on_progress(self.now)

    def stage(self, stage: Literal["test"]) -> None:
        self.tell(stage=stage, trial=None, seed=None, epoch_s=None, step=0, n_steps=0)

    def run(
        self, trial: int, seed: int, epochs: int
    ) -> tuple[Callable[[EpochResult], None] | None, OnStep | None]:
        """Tell that a run starts; its `on_epoch` and `on_step` hooks (None without a
        listener, so training skips them)."""
        self.tell(trial=trial, seed=seed, epoch=0, epochs=epochs, epoch_s=None, step=0, n_steps=0)
        if self.on_progress is None:
            return None, None

        def on_epoch(epoch: EpochResult) -> None:
            done = self.now.done + 1
            self.tell(epoch=epoch.epoch, done=done, epoch_s=epoch.seconds, step=0, n_steps=0)

        def on_step(step: int, n_steps: int) -> None:
            self.tell(epoch_s=None, step=step, n_steps=n_steps)

        return on_epoch, on_step


def _as_searched(trial: FrozenTrial, config: TrialConfig, dataset: Dataset) -> Member:
    """The trial's own model: its configuration rebuilt, its best-epoch weights loaded."""
    record = TrialRecord.of(trial)
    try:
        preprocessing = Preprocessing.model_validate(record.preprocessing)
    except ValueError:
        raise StudyError(
            f"cannot export trial #{trial.number} as searched: it stores no usable "
            f"preprocessing; {RETRAIN_INSTEAD}"
        ) from None
    model = build_model(
        config.model,
        n_classes=dataset.n_classes,
        in_chans=config.data.channels,
        image_size=config.data.image_size,
        load_pretrained=False,  # every tensor comes from the weights file
    )
    load_weights(model, record.weights, trial=trial.number)
    seed = config.train.seed
    return Member(
        trial,
        config,
        model.eval(),
        preprocessing,
        record.augmentation,
        count_parameters(model),
        _best_epoch(record, config),
        "train",  # a trial trains on train and validates on val
        retrained=False,
        seed=seed,
        seed_runs=[SeedRun(seed, None)],
    )


def _best_epoch(record: TrialRecord, config: TrialConfig) -> int:
    """The epoch count a member trains (or trained) for: the trial's best epoch."""
    return record.best_epoch if record.best_epoch is not None else config.train.epochs


def _better_on_val(run: SeedRun, best: SeedRun, spec: Spec) -> bool:
    """Whether `run` beats `best` on the validation objective (several seeds keep val out)."""
    assert run.val is not None and best.val is not None, "see FinalSpec: seeds need val held out"
    objective = spec.study.metric  # the validation metric (a latency objective is not one)
    new, old = run.val.metric(objective), best.val.metric(objective)
    return new < old if spec.study.resolved_direction == "minimize" else new > old


def _complete_trial(study: optuna.Study, number: int) -> FrozenTrial:
    trials = study.get_trials(deepcopy=False)
    match = [t for t in trials if t.number == number]
    if not match:
        raise StudyError(
            f"study {study.study_name!r} has no trial #{number} (it has #0–#{len(trials) - 1})"
        )
    state = trial_state(match[0])
    if state not in USABLE_STATES:
        raise StudyError(
            f"trial #{number} is {STATES[state]}, not a usable result ({USABLE}); `autoclf "
            "status SPEC` lists the trials"
        )
    return match[0]
