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
probabilities. The test split is touched here and nowhere else, by the final model only (plainly,
with the spec's test-time augmentation when asked, and member 0 alone beside an ensemble). The
export's `spec.yaml` is made and checked before any training, so a spec that cannot be written
fails in seconds, not after the retrain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import optuna
from optuna.trial import FrozenTrial
from torch import nn

from automl_clf.data.batches import OnStep
from automl_clf.data.dataset import Dataset, SplitArrays, load_dataset
from automl_clf.data.preprocess import Decoding, Preprocessing
from automl_clf.errors import SpecError, StudyError
from automl_clf.final.ensemble import Ensemble, check_same_decoding
from automl_clf.final.provenance import resolved_spec_yaml
from automl_clf.final.tta import evaluate_tta
from automl_clf.models.factory import build_model, count_parameters
from automl_clf.search.record import TrialRecord
from automl_clf.search.study import best_trial, check_compatible, ranked_trials
from automl_clf.spec.config import TrialConfig
from automl_clf.spec.models import FinalSpec, Spec
from automl_clf.train.device import resolve_device
from automl_clf.train.metrics import EvalResult
from automl_clf.train.session import train_config
from automl_clf.train.trainer import EpochResult, evaluate
from automl_clf.train.weights import RETRAIN_INSTEAD, load_weights, weights_problem


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


def trial_config(trial: FrozenTrial) -> TrialConfig:
    """The configuration a trial trained, as it stored it."""
    stored = TrialRecord.of(trial).config
    problem = "none stored"
    if stored is not None:
        try:
            return TrialConfig.model_validate(stored)
        except ValueError as exc:
            problem = str(exc)
    raise StudyError(
        f"trial {trial.number} stores no usable configuration ({problem}); it was not made by "
        "this version of autoclf"
    )


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
    adaptive_threads: bool = False,
) -> FinalResult:
    """Make the final model (see the module docstring) and evaluate it on the test split.

    Args:
        trial_number: export this complete trial instead of the best (needs final.ensemble 1).
        retrain_members: whether to retrain, or how many members (best first; the others as
            searched); None follows `final.retrain` (`auto` retrains). A caller that knows how
            much time is left (a budget planner) passes what fits for `auto`.
        on_progress: told each run's start, each epoch's end, the batches inside a long
            epoch, and the test (`RetrainProgress`): a display's bar and ETA.
        adaptive_threads: retrain on the CPU thread count that measures fastest (a job under a
            time budget; train/threads.py) rather than a fixed one (reproducible).

    Raises:
        SpecError: --trial with final.ensemble > 1.
        StudyError: no complete trial; not retraining and a member's best-epoch weights are
            missing or changed (the message says to retrain instead).
    """
    trials, notes = choose_members(study, spec, trial_number)
    if retrain_members is None:
        retrain_members = spec.final.retrain != "never"
    n_again = len(trials) if retrain_members is True else int(retrain_members)
    again = [i < n_again for i in range(len(trials))]
    _check_weights_kept([t for t, fresh in zip(trials, again, strict=True) if not fresh], spec)
    # this command's device (--device), not where the trials ran: checked before any training
    device = resolve_device(spec.train.device)
    configs = [
        on_device(final_config(trial_config(t), spec.final), spec.train.device)
        if fresh
        else trial_config(t)
        for t, fresh in zip(trials, again, strict=True)
    ]
    try:
        check_same_decoding([Decoding.of(config.data) for config in configs])
    except ValueError as exc:
        raise StudyError(
            f"final.ensemble: the top {len(trials)} trials cannot be averaged: {exc}"
        ) from None
    spec_yaml = _spec_yaml(spec, configs[0], trials)
    dataset = load_dataset(spec.data)
    check_compatible(study, spec, dataset)
    retrained = [(t, c) for t, c, fresh in zip(trials, configs, again, strict=True) if fresh]
    n_epochs = sum(_best_epoch(TrialRecord.of(t), c) for t, c in retrained) * spec.final.seeds
    told = _Told(on_progress, total=n_epochs)  # the display's count over every run
    members = [
        _retrained(spec, trial, config, dataset, told, adaptive_threads)
        if fresh
        else _as_searched(trial, config, dataset)
        for trial, config, fresh in zip(trials, configs, again, strict=True)
    ]
    told.stage("test")
    first = members[0]
    model: nn.Module = first.model
    if len(members) > 1:
        model = Ensemble([m.model for m in members], [m.preprocessing for m in members])
    model.to(device)
    test_data = dataset.arrays(Decoding.of(configs[0].data))["test"]
    pre = first.preprocessing
    test = evaluate(model, test_data, pre, device)
    single = evaluate(first.model, test_data, pre, device) if len(members) > 1 else None
    tta = tuple(spec.final.tta)
    test_tta = evaluate_tta(model, test_data, pre, device, tta) if tta else None
    return FinalResult(
        members,
        model,
        test,
        test_data,
        dataset,
        spec_yaml=spec_yaml,
        tta=tta,
        test_tta=test_tta,
        test_single=single,
        notes=notes,
    )


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
            f"complete feasible trial(s): {what}"
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
    adaptive_threads: bool,
) -> Member:
    """Retrain `config` for the trial's best epoch count, over `final.seeds` (module docstring)."""
    record = TrialRecord.of(trial)
    epochs = _best_epoch(record, config)
    both = spec.final.train_on == "train+val"
    replay = record.lr_history if config.train.schedule == "plateau" else None
    runs: list[SeedRun] = []
    chosen = None  # (run, trained): only the best model is kept in memory
    for seed in range(spec.final.seed, spec.final.seed + spec.final.seeds):
        on_epoch, on_step = told.run(trial.number, seed, epochs)
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
            adaptive_threads=adaptive_threads,
        )
        runs.append(SeedRun(seed, trained.fit.best.val))
        if chosen is None or _better_on_val(runs[-1], chosen[0], spec):
            chosen = (runs[-1], trained)
    assert chosen is not None, "final.seeds is at least 1"
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
    if match[0].state != optuna.trial.TrialState.COMPLETE:
        raise StudyError(
            f"trial #{number} is {match[0].state.name}, not COMPLETE; `autoclf best SPEC` lists "
            "the complete ones"
        )
    return match[0]
