"""Train one `TrialConfig` on a data set: the shared path of search trials and the final retrain.

It fixes the order that makes a run reproducible and leak-free: seed, decode, compute dataset
statistics on the training pixels only, build the preprocessing, the model and the training-split
augmentation, then fit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from automl_clf.data.augment import build_augmenter
from automl_clf.data.dataset import Dataset, SplitArrays
from automl_clf.data.preprocess import Decoding, Preprocessing, build_preprocessing, mean_std
from automl_clf.models.factory import build_model, count_parameters, measure_latency_ms
from automl_clf.spec.config import TrialConfig
from automl_clf.train.trainer import (
    EpochResult,
    FitResult,
    class_weights,
    fit,
    resolve_device,
    seed_everything,
)


@dataclass
class TrainedModel:
    fit: FitResult
    preprocessing: Preprocessing
    n_params: int
    latency_ms: float  # median forward time of one image on the training device


def train_config(
    config: TrialConfig,
    dataset: Dataset,
    *,
    train_on: tuple[str, ...] = ("train",),
    validate_on: str | None = "val",
    class_weighting: str | None = None,
    max_epochs: int | None = None,
    seed: int | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> TrainedModel:
    """Train `config` on the named splits; see the module docstring.

    Args:
        train_on: splits to train on, e.g. ("train", "val") for the final retrain.
        validate_on: the split for early stopping and pruning, or None.
        class_weighting: overrides `config.train.class_weighting` (the final retrain's own).
        seed: overrides `config.train.seed` (final retrains over several seeds).
    """
    train_cfg = config.train if seed is None else config.train.model_copy(update={"seed": seed})
    seed_everything(train_cfg.seed)
    splits = dataset.arrays(Decoding.of(config.data))
    train = SplitArrays.concat(*(splits[name] for name in train_on))
    val = splits[validate_on] if validate_on is not None else None
    preprocessing = build_preprocessing(config.data, config.model.backbone, mean_std(train.pixels))
    model = build_model(
        config.model,
        n_classes=dataset.n_classes,
        in_chans=config.data.channels,
        image_size=config.data.image_size,
    )
    weighting = class_weighting or train_cfg.class_weighting
    result = fit(
        model,
        train,
        val,
        train_cfg,
        preprocessing,
        build_augmenter(config.augment, seed=train_cfg.seed),
        weights=class_weights(train.labels, dataset.n_classes, weighting),
        max_epochs=max_epochs,
        on_epoch=on_epoch,
    )
    latency = measure_latency_ms(
        result.model,
        config.data.channels,
        config.data.image_size,
        resolve_device(train_cfg.device),
    )
    return TrainedModel(result, preprocessing, count_parameters(model), latency)
