"""Resolve a spec into one `TrialConfig`, sampling every search space through a `ParamSource`.

Param names are the dotted spec paths (`train.lr`, `model.cnn.filters`), so the dashboard, the
`best` table and error messages all speak the spec's language. Conditional sub-spaces are
resolved here and only here: the plain CNN's values are sampled only when the backbone is `cnn`,
momentum only when the optimizer is `sgd`. A value that is not sampled does not exist in the
trial's params, so samplers never learn from values that had no effect.
"""

from __future__ import annotations

from typing import Any

from automl_clf.spec.config import (
    AugmentConfig,
    CNNConfig,
    DataConfig,
    ModelConfig,
    TrainConfig,
    TrialConfig,
)
from automl_clf.spec.models import PLAIN_CNN, Spec
from automl_clf.spec.space import ParamSource, SpecModel, sample


def resolve_fields(
    section: SpecModel, prefix: str, source: ParamSource, *, skip: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Each field of `section`, in declaration order, sampled when it is a search space."""
    resolved: dict[str, Any] = {}
    for field_name in type(section).model_fields:
        if field_name in skip:
            continue
        value = getattr(section, field_name)
        resolved[field_name] = sample(source, f"{prefix}.{field_name}", value)
    return resolved


def resolve(spec: Spec, source: ParamSource) -> TrialConfig:
    """The one concrete configuration that `source` picks from `spec`'s search space."""
    model = resolve_fields(spec.model, "model", source, skip=frozenset({"cnn", "pretrained"}))
    cnn = None
    if model["backbone"] == PLAIN_CNN:
        cnn = CNNConfig(**resolve_fields(spec.model.cnn, "model.cnn", source))
    pretrained = str(spec.model.pretrained) if spec.model.pretrained is not None else None

    train = resolve_fields(spec.train, "train", source, skip=frozenset({"momentum"}))
    momentum = None
    if train["optimizer"] == "sgd":
        momentum = sample(source, "train.momentum", spec.train.momentum)

    augment = resolve_fields(spec.augment, "augment", source, skip=frozenset({"transforms"}))
    transforms = spec.augment.transforms
    return TrialConfig(
        data=DataConfig(
            image_size=spec.data.image_size,
            channels=spec.data.channels,
            resize=spec.data.resize,
            normalize=spec.data.normalize,
        ),
        model=ModelConfig(**model, cnn=cnn, pretrained=pretrained),
        train=TrainConfig(**train, momentum=momentum),
        augment=AugmentConfig(
            **augment,
            transforms=tuple(t.model_dump() for t in transforms) if transforms else None,
        ),
    )
