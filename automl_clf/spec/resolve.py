"""Resolve a spec into one `TrialConfig`, sampling every search space through a `ParamSource`.

Param names are the dotted spec paths (`train.lr`, `model.cnn.filters`), so the dashboard, the
`best` table and error messages all speak the spec's language. Conditional sub-spaces are
resolved here and only here: the plain CNN's values are sampled only when the backbone is `cnn`,
the transfer settings only when it starts from pretrained weights, momentum only when the
optimizer is `sgd`. A value that is not sampled does not exist in the trial's params, so
samplers never learn from values that had no effect.
"""

from __future__ import annotations

from typing import Any

from automl_clf.spec.augment import AugmentSpec
from automl_clf.spec.config import (
    AugmentConfig,
    CNNConfig,
    DataConfig,
    ModelConfig,
    TrainConfig,
    TrialConfig,
)
from automl_clf.spec.model import PLAIN_CNN, ModelSpec, takes_pretrained
from automl_clf.spec.models import Spec
from automl_clf.spec.space import ParamSource, SpecModel, sample
from automl_clf.spec.train import TrainSpec


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
    return TrialConfig(
        data=DataConfig(
            image_size=spec.data.image_size,
            channels=spec.data.channels,
            resize=spec.data.resize,
            normalize=spec.data.normalize,
        ),
        model=_resolve_model(spec.model, source),
        train=_resolve_train(spec.train, source),
        augment=_resolve_augment(spec.augment, source),
    )


def _resolve_model(model: ModelSpec, source: ParamSource) -> ModelConfig:
    values = resolve_fields(
        model, "model", source, skip=frozenset({"cnn", "pretrained", *_TRANSFER_FIELDS})
    )
    cnn = None
    if values["backbone"] == PLAIN_CNN:
        cnn = CNNConfig(**resolve_fields(model.cnn, "model.cnn", source))
    transfer: Any = "finetune"
    stages, lr_scale = None, None
    # `pretrained: true` with the plain CNN among the choices: its trials start from scratch
    pretrained = model.pretrained if takes_pretrained(values["backbone"]) else None
    if pretrained is not None:  # transfer settings only mean something with weights
        transfer = sample(source, "model.transfer", model.transfer)
        if transfer == "partial":
            stages = sample(source, "model.unfreeze_stages", model.unfreeze_stages)
        if transfer != "freeze":
            lr_scale = sample(source, "model.backbone_lr_scale", model.backbone_lr_scale)
    return ModelConfig(
        **values,
        cnn=cnn,
        pretrained=pretrained,
        transfer=transfer,
        unfreeze_stages=stages,
        backbone_lr_scale=lr_scale,
    )


_TRANSFER_FIELDS = ("transfer", "unfreeze_stages", "backbone_lr_scale")


def _resolve_train(train: TrainSpec, source: ParamSource) -> TrainConfig:
    values = resolve_fields(
        train, "train", source, skip=frozenset({"momentum", "nesterov", "warmup_epochs"})
    )
    sgd = values["optimizer"] == "sgd"
    momentum = sample(source, "train.momentum", train.momentum) if sgd else None
    nesterov = sample(source, "train.nesterov", train.nesterov) if sgd else None
    warmup = None
    if values["schedule"] != "onecycle":
        warmup = sample(source, "train.warmup_epochs", train.warmup_epochs)
    return TrainConfig(**values, momentum=momentum, nesterov=nesterov, warmup_epochs=warmup)


def _resolve_augment(augment: AugmentSpec, source: ParamSource) -> AugmentConfig:
    """A named policy (with its magnitude and flips) or a custom list, recorded as the list of
    transforms that runs (policy `none`)."""
    policy: Any = "none"
    magnitude, hflip, transforms = 1.0, False, None
    if augment.transforms is not None:
        picked = sample(source, "augment.transforms", augment.transforms)
    else:
        picked = sample(source, "augment.policy", augment.policy)
    if isinstance(picked, list):  # a custom list runs as written
        transforms = tuple(t.model_dump() for t in picked)
    else:
        policy = picked
        if policy != "none":
            magnitude = sample(source, "augment.magnitude", augment.magnitude)
        hflip = sample(source, "augment.hflip", augment.hflip)
    mixup = sample(source, "augment.mixup", augment.mixup)
    mixup_alpha = sample(source, "augment.mixup_alpha", augment.mixup_alpha) if mixup else None
    cutmix = sample(source, "augment.cutmix", augment.cutmix)
    cutmix_alpha = sample(source, "augment.cutmix_alpha", augment.cutmix_alpha) if cutmix else None
    return AugmentConfig(
        policy=policy,
        magnitude=magnitude,
        hflip=hflip,
        transforms=transforms,
        mixup=mixup,
        mixup_alpha=mixup_alpha,
        cutmix=cutmix,
        cutmix_alpha=cutmix_alpha,
    )
