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
    """The splits the chosen configuration is retrained on, for the trial's best epoch count."""
    class_weighting: Literal["none", "balanced", "searched"] = "balanced"
    """The retrain's class weighting: balanced, none, or `searched` (the trial's own
    train.class_weighting). The export records the value that ran."""
    seed: Seed = 0
    """The first retrain's seed; further seeds count up from it."""
    seeds: PositiveInt = 1
    """Retrain with seeds seed, seed+1, …; the best on the validation split (by the study's
    objective) is exported and the spread across seeds is reported. Needs train_on: train."""
    tta: tuple[Literal["hflip", "crops"], ...] = ()
    """Test-time augmentation, reported beside the plain test result (the export predicts
    plainly): hflip averages with the mirrored image; crops with 4 corner and 1 centre crop of
    7/8 of the image, each resized back."""
    retrain: Literal["auto", "always", "never"] = "auto"
    """always: retrain the chosen trial(s) before the test; never: export each trial's own
    best-epoch weights as searched (nothing trains); auto: retrain unless the caller has no
    time left for it (`autoclf run` under study.budget)."""
    ensemble: Annotated[int, Field(ge=1, le=10)] = 1
    """At most K members: the top K trials of a single-objective study are weighed on the
    validation split (greedy ensemble selection, Caruana et al. 2004); members that do not help
    get weight 0, and the best trial alone is exported unless a weighted mix beats it on the
    study's objective. One exported model returns the log of the weighted mean softmax."""
    ensemble_weights: Literal["selected", "equal"] = "selected"
    """selected: the members and their weights chosen on validation (see ensemble); equal: the
    top K trials averaged with equal weights, whether or not each helps."""
    max_latency_ms: Annotated[float, Field(gt=0)] | None = None
    """An ensemble's members together may take at most this many ms per image (batch 1, as the
    trials measured it); a member that would break it is not added."""
    max_size_mb: Annotated[float, Field(gt=0)] | None = None
    """An ensemble's members' weights together may take at most this many MB (float32)."""
    calibrate: Literal["temperature", "none"] = "temperature"
    """temperature: divide the final model's logits by one temperature T fitted on validation
    predictions it did not train on (Guo et al. 2017; a model retrained on train+val takes its
    trial's), so its probabilities mean what they say; stored in model.json and applied by the
    Predictor, TorchScript and ONNX alike. none: the raw probabilities."""
    min_confidence: Annotated[float, Field(ge=0, le=1)] | None = None
    """`predict` answers `unsure` when the top (calibrated) probability is below this; stored
    in model.json as predict's default (`--min-confidence` overrides it). None: always a
    class."""
    target_accuracy: Annotated[float, Field(gt=0, le=1)] = 0.99
    """The report names the lowest confidence threshold whose answered test images reach this
    accuracy (and their share), or says that none does."""
    ood_percentile: Annotated[float, Field(gt=0, lt=50)] = 5.0
    """`predict` flags an image as out of distribution (`ood`) when its top probability is
    below this percentile of the validation images' top probabilities: about this share (%)
    of images like the validation ones are flagged."""
    audit_labels: bool = False
    """`autoclf run` also looks for mislabelled images (as `autoclf audit` does: cross-fitted
    out-of-sample probabilities, then confident learning) before the search, in a fifth of
    the time budget, and the export's report lists them (report/label_issues.csv). Its models
    are thrown away; nothing is changed in the data."""

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
