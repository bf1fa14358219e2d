"""The `final` section: how `autoclf best --export` (and `run`) turns the chosen trial(s) into
the exported model."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from automl_clf.spec.fields import PositiveInt, Seed
from automl_clf.spec.space import SpecModel


class FinalSpec(SpecModel):
    """How `autoclf best --export` retrains the chosen configuration before the test split."""

    train_on: Literal["train", "train+val"] = "train+val"
    # The retrain's class weighting: the mission retrains the best configuration with balanced
    # class weights; `searched` keeps the trial's own train.class_weighting. The export records
    # the value that ran (model.json's config, spec.yaml, the report).
    class_weighting: Literal["none", "balanced", "searched"] = "balanced"
    seed: Seed = 0  # the first retrain's seed; further seeds count up from it
    # Retrains with seeds seed, seed+1, …; the best on the validation split (by the study's
    # objective) is exported and the spread across seeds is reported. Needs train_on: train.
    seeds: PositiveInt = 1
    # Test-time augmentation, reported beside the plain test result (the export predicts plainly):
    # hflip averages with the mirrored image; crops with 4 corner and 1 centre crop of 7/8 of
    # the image, each resized back.
    tta: tuple[Literal["hflip", "crops"], ...] = ()
    # Retrain the chosen trial(s) before the test (`always`), or export each trial's own
    # best-epoch weights as searched (`never`: no training at all, the model val chose is the
    # model tested; the search keeps those weights beside each complete trial). `auto` retrains
    # unless the caller has no time left for it (`autoclf run` under study.budget).
    retrain: Literal["auto", "always", "never"] = "auto"
    # Average the top-K complete trials of a single-objective study: the exported model returns
    # the log of the mean of their softmax probabilities. Each member is retrained (or taken as
    # searched, per `retrain`), so the final step takes about K times as long.
    ensemble: Annotated[int, Field(ge=1, le=10)] = 1

    @model_validator(mode="after")
    def _seeds_need_a_held_out_val(self) -> FinalSpec:
        if self.seeds > 1 and self.train_on == "train+val":
            raise ValueError(
                f"seeds: choosing the best of {self.seeds} seeds needs the validation split held "
                "out, but train_on is 'train+val'; set train_on: train, or seeds: 1"
            )
        if self.seeds > 1 and self.retrain == "never":
            raise ValueError(
                f"seeds: retrain 'never' exports the trials' own weights, so there is nothing to "
                f"train with {self.seeds} seeds; set seeds: 1, or retrain: always"
            )
        if len(set(self.tta)) != len(self.tta):
            raise ValueError(f"tta: each view at most once, got {list(self.tta)}")
        return self
