"""The spec: the pydantic model of the YAML file a user writes, one section per module.

    study    spec/study.py    (its sampler and pruner kinds: spec/samplers.py, spec/pruners.py)
    data     spec/data.py
    model    spec/model.py
    train    spec/train.py
    augment  spec/augment.py  (its named policies: spec/policies.py)
    final    spec/final.py

Every tunable field (`Tunable[...]`) takes a literal, a range or a list of choices; see
`spec/space.py`. A trial turns the spec into one concrete `TrialConfig` (`spec/config.py`) via
`spec/resolve.py`. Relative paths resolve against the spec file's folder: the loader passes that
folder as validation context (`base_dir`). The section models are re-exported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from automl_clf.spec.augment import AugmentSpec, TransformSpec
from automl_clf.spec.data import DataSpec, SplitSpec
from automl_clf.spec.final import FinalSpec
from automl_clf.spec.model import PLAIN_CNN, PRETRAINED_CACHE, CNNSpec, ModelSpec
from automl_clf.spec.space import SpecModel
from automl_clf.spec.study import ConstraintsSpec, StudySpec
from automl_clf.spec.train import TrainSpec
from automl_clf.versions import SPEC

__all__ = [
    "PLAIN_CNN",
    "PRETRAINED_CACHE",
    "AugmentSpec",
    "CNNSpec",
    "ConstraintsSpec",
    "DataSpec",
    "FinalSpec",
    "ModelSpec",
    "ResolvedDataSpec",
    "ResolvedSpec",
    "ResolvedStudySpec",
    "Spec",
    "SplitSpec",
    "StudySpec",
    "TrainSpec",
    "TransformSpec",
]


class Spec(SpecModel):
    """A whole autoclf spec. `autoclf schema` prints its JSON Schema for editor completion."""

    version: Annotated[int, Field(ge=1)] = SPEC.version
    """The version of the spec format the file is written in; absent: 1. An older one is read
    through its migrations, a newer one is refused (`autoclf --version` lists those this
    autoclf reads); `autoclf init` writes the current one."""
    study: StudySpec = StudySpec()
    """The Optuna study: where it lives, what it optimises, how it samples and prunes, how long
    it runs."""
    data: DataSpec
    """The images and how each becomes a tensor (training and predict alike)."""
    model: ModelSpec = ModelSpec()
    """The network: the plain CNN or timm backbones, optionally pretrained."""
    train: TrainSpec = TrainSpec()
    """The trainer: epochs, batch size, optimizer, learning rate and schedule, class
    weighting."""
    augment: AugmentSpec = AugmentSpec()
    """Augmentation of the training split only: a named policy or a custom list, MixUp,
    CutMix."""
    final: FinalSpec = FinalSpec()
    """How the chosen trial(s) become the exported model: retrain, seeds, ensemble, TTA."""

    @model_validator(mode="after")
    def _study_fits_the_space(self) -> Spec:
        from automl_clf.spec.warmstart import check_search_settings

        check_search_settings(self)  # warm-start entries, a grid's finiteness
        if self.final.ensemble > 1 and self.study.is_multi_objective:
            raise ValueError(
                f"final.ensemble: averaging the top {self.final.ensemble} trials needs one "
                f"objective to rank them by, got objectives {list(self.study.objectives)}; set "
                "final.ensemble: 1 and export a trial of the Pareto front with --trial N"
            )
        return self


class ResolvedStudySpec(StudySpec):
    """`study` as `load_spec` returns it: the name, storage URL and artifacts folder that
    default from where the spec file lives are filled in."""

    name: str
    storage: str
    artifacts: Path


class ResolvedDataSpec(DataSpec):
    """`data` as `load_spec` returns it: the decode cache's folder filled in."""

    cache_dir: Path


class ResolvedSpec(Spec):
    """A spec as `load_spec` returns it, every default that depends on the file's place filled
    in: what opening the study, its artifacts and the decode cache takes, typed as present.
    Built from an already validated `Spec` (spec/load.py::with_study_defaults), never parsed."""

    study: ResolvedStudySpec
    data: ResolvedDataSpec
