"""The model room: the plain CNN family and the timm factory."""

from automl_clf.models.factory import build_model, count_parameters, list_backbones

__all__ = ["build_model", "count_parameters", "list_backbones"]
