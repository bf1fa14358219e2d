"""The named augmentation policies (spec/policies.py): each described from its own transforms,
and the spec's field description listing every registered one."""

from __future__ import annotations

import pytest

from automl_clf.spec.augment import AugmentSpec
from automl_clf.spec.policies import (
    POLICIES,
    describe_policy,
    describe_transform,
    policy_transforms,
)


def test_a_description_is_written_from_the_transforms_that_run() -> None:
    assert describe_policy("none") == "nothing"
    assert describe_policy("light") == "Affine (shift ±6%, scale 0.95–1.05, rotate ±8°; p 0.5)"
    heavy = describe_policy("heavy")
    assert "shear ±8°" in heavy and "one cut-out hole of 15–30% per side (p 0.5)" in heavy


def test_a_changed_policy_describes_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    light = POLICIES["light"]
    monkeypatch.setitem(POLICIES._entries, "light", lambda m: light(2 * m))  # twice as strong
    assert describe_policy("light") == "Affine (shift ±12%, scale 0.9–1.1, rotate ±16°; p 0.5)"


def test_a_transform_the_policies_do_not_use_is_written_with_its_arguments() -> None:
    assert describe_transform({"name": "Blur", "blur_limit": 3, "p": 0.2}) == (
        "Blur(blur_limit=3) (p 0.2)"
    )


@pytest.mark.parametrize("name", POLICIES.kinds)
def test_the_spec_describes_every_registered_policy(name: str) -> None:
    description = AugmentSpec.model_fields["policy"].description or ""
    assert f"{name}: {describe_policy(name)}" in description
    assert policy_transforms(name, 1.0) == POLICIES[name](1.0)
