"""The model room: the plain CNN family and the timm factory.

Its names are imported on first use (PEP 562), so that the spec can read backbone names
(spec/backbones.py) without importing torch, which models/factory.py does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from automl_clf.models.factory import build_model, count_parameters
    from automl_clf.spec.backbones import list_backbones

_HOMES = {
    "build_model": "automl_clf.models.factory",
    "count_parameters": "automl_clf.models.factory",
    "list_backbones": "automl_clf.spec.backbones",
}
__all__ = ["build_model", "count_parameters", "list_backbones"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
