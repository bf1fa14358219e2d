"""Every registry (spec/registry.py): each kind is registered once, and an unknown kind is an
error naming the close and the known ones, never a fallback."""

from __future__ import annotations

from typing import Any

import pytest

from automl_clf.data.batch_augment import KERNELS
from automl_clf.errors import SpecError
from automl_clf.final.formats import FORMATS
from automl_clf.models.registry import BACKBONES
from automl_clf.search.storage import STORAGES
from automl_clf.spec.policies import POLICIES
from automl_clf.spec.pruners import PRUNERS
from automl_clf.spec.registry import Registry
from automl_clf.spec.samplers import SAMPLERS

REGISTRIES: dict[str, Registry[Any]] = {
    "samplers": SAMPLERS,
    "pruners": PRUNERS,
    "policies": POLICIES,
    "batched transforms": KERNELS,
    "backbones": BACKBONES,
    "storages": STORAGES,
    "formats": FORMATS,
}


@pytest.mark.parametrize("registry", REGISTRIES.values(), ids=list(REGISTRIES))
def test_an_unknown_kind_is_an_error_naming_the_known_ones(registry: Registry[Any]) -> None:
    known = registry.kinds[0]
    typo = known[:-1] + "#"  # one letter off a known kind
    with pytest.raises(SpecError) as raised:
        registry[typo]
    message = str(raised.value)
    assert message.startswith(f"unknown {registry.what} {typo!r} (did you mean {known!r}? ")
    assert f"known {registry.plural}: {', '.join(registry.kinds)})" in message


def test_a_kind_is_registered_once() -> None:
    things: Registry[int] = Registry("thing")
    things.register("a")(1)
    with pytest.raises(ValueError, match="thing 'a' is registered twice"):
        things.register("a")(2)
    assert things["a"] == 1 and things.kinds == ("a",)


@pytest.mark.parametrize("registry", [SAMPLERS, PRUNERS], ids=["samplers", "pruners"])
def test_each_spec_kind_is_its_registered_name(registry: Any) -> None:
    for kind, cls in registry.items():
        assert cls().kind == kind  # its default `kind` is the name it is registered under
