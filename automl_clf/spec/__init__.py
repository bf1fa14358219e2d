"""The spec room: pydantic models of the YAML spec, search-space values, and resolving a spec
into one concrete `TrialConfig`."""

from automl_clf.spec.config import TrialConfig
from automl_clf.spec.describe import SpaceDescription, describe_space
from automl_clf.spec.load import load_spec, parse_spec
from automl_clf.spec.models import Spec
from automl_clf.spec.resolve import resolve
from automl_clf.spec.space import FixedParams, ParamSource

__all__ = [
    "FixedParams",
    "ParamSource",
    "SpaceDescription",
    "Spec",
    "TrialConfig",
    "describe_space",
    "load_spec",
    "parse_spec",
    "resolve",
]
