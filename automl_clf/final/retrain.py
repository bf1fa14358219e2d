"""Retrain a chosen trial's configuration and evaluate it once on the held-out test split.

The final model trains on train+val (or train) for the trial's best epoch count, with the
final section's class weighting (`final_config`: the configuration that runs is the one the
export records). With `final.seeds > 1` it trains once per seed (train only, so
validation stays held out), keeps the best on validation by the study's objective and reports the
spread. The test split is touched here and nowhere else, by the chosen model only (plainly, and
with the spec's test-time augmentation when asked). The export's `spec.yaml` is made and checked
before any training, so a spec that cannot be written fails in seconds, not after the retrain.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial

from automl_clf.data.dataset import Dataset, SplitArrays, load_dataset
from automl_clf.data.preprocess import Decoding
from automl_clf.errors import StudyError
from automl_clf.final.provenance import resolved_spec_yaml
from automl_clf.final.tta import evaluate_tta
from automl_clf.search.study import best_trial, check_compatible
from automl_clf.spec.config import TrialConfig
from automl_clf.spec.models import FinalSpec, Spec
from automl_clf.train.metrics import EvalResult
from automl_clf.train.session import TrainedModel, train_config
from automl_clf.train.trainer import evaluate, resolve_device


@dataclass(frozen=True)
class SeedRun:
    """One retrain of the final configuration; `val` is None when val was trained on."""

    seed: int
    val: EvalResult | None


@dataclass
class FinalResult:
    trial: FrozenTrial
    config: TrialConfig  # what the retrain ran: the trial's, with the final section applied
    trained: TrainedModel  # the chosen seed's model
    test: EvalResult
    test_data: SplitArrays
    dataset: Dataset
    epochs: int
    train_on: str
    seed: int  # the chosen (exported) seed
    seed_runs: list[SeedRun]  # every seed trained, in order
    spec_yaml: str  # the export's spec.yaml (final/provenance.py)
    tta: tuple[str, ...] = ()  # the test-time augmentation views of `test_tta`
    test_tta: EvalResult | None = None


def trial_config(trial: FrozenTrial) -> TrialConfig:
    """The configuration a trial trained, as it stored it."""
    try:
        return TrialConfig.model_validate(trial.user_attrs["config"])
    except (KeyError, ValueError) as exc:
        raise StudyError(
            f"trial {trial.number} stores no usable configuration ({exc}); it was not made by "
            "this version of autoclf"
        ) from None


def final_config(config: TrialConfig, final: FinalSpec) -> TrialConfig:
    """The configuration the final retrain runs: the trial's, with `final.class_weighting`
    (unless it says `searched`). Returned whole so that model.json, spec.yaml and the report
    record what ran, not what the trial searched."""
    if final.class_weighting == "searched":
        return config
    train = config.train.model_copy(update={"class_weighting": final.class_weighting})
    return config.model_copy(update={"train": train})


def retrain(spec: Spec, study: optuna.Study, trial_number: int | None = None) -> FinalResult:
    """Retrain the best (or the given) complete trial and evaluate it on the test split."""
    trial = best_trial(study) if trial_number is None else _complete_trial(study, trial_number)
    config = final_config(trial_config(trial), spec.final)
    study_name = spec.study.name or "study"
    spec_yaml = resolved_spec_yaml(spec, config, study=study_name, trial=trial.number)
    dataset = load_dataset(spec.data)
    check_compatible(study, spec, dataset)
    epochs = int(trial.user_attrs.get("best_epoch", config.train.epochs))
    both = spec.final.train_on == "train+val"
    replay = trial.user_attrs.get("lr_history") if config.train.schedule == "plateau" else None
    runs: list[SeedRun] = []
    chosen: tuple[SeedRun, TrainedModel] | None = None  # only the best model is kept in memory
    for seed in range(spec.final.seed, spec.final.seed + spec.final.seeds):
        trained = train_config(
            config,
            dataset,
            train_on=("train", "val") if both else ("train",),
            validate_on=None if both else "val",
            max_epochs=epochs,
            lr_replay=replay,
            seed=seed,
        )
        runs.append(SeedRun(seed, trained.fit.best.val))
        if chosen is None or _better_on_val(runs[-1], chosen[0], spec):
            chosen = (runs[-1], trained)
    assert chosen is not None, "final.seeds is at least 1"
    trained = chosen[1]
    test_data = dataset.arrays(Decoding.of(config.data))["test"]
    device = resolve_device(config.train.device)
    test = evaluate(trained.fit.model, test_data, trained.preprocessing, device)
    tta = tuple(spec.final.tta)
    test_tta = (
        evaluate_tta(trained.fit.model, test_data, trained.preprocessing, device, tta)
        if tta
        else None
    )
    return FinalResult(
        trial,
        config,
        trained,
        test,
        test_data,
        dataset,
        epochs,
        spec.final.train_on,
        seed=chosen[0].seed,
        seed_runs=runs,
        spec_yaml=spec_yaml,
        tta=tta,
        test_tta=test_tta,
    )


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
