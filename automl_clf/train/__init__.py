"""The train room: the trainer loop, optimizers and schedules, metrics."""

from automl_clf.train.device import resolve_device
from automl_clf.train.metrics import EvalResult
from automl_clf.train.session import TrainedModel, train_config
from automl_clf.train.trainer import EpochResult, FitResult, evaluate, fit

__all__ = [
    "EpochResult",
    "EvalResult",
    "FitResult",
    "TrainedModel",
    "evaluate",
    "fit",
    "resolve_device",
    "train_config",
]
