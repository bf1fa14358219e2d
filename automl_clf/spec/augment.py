"""The `augment` section: a named policy (spec/policies.py) or a custom albumentations list,
and batch-level MixUp / CutMix."""

from __future__ import annotations

import itertools
from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from automl_clf.spec.config import PolicyName
from automl_clf.spec.fields import PositiveFloat, library_checks
from automl_clf.spec.policies import policy_descriptions
from automl_clf.spec.space import Choice, SpecModel, Tunable, candidate_values


class TransformSpec(SpecModel):
    """One albumentations transform by class name, with its arguments: `{name: Blur, p: 0.3}`."""

    model_config = SpecModel.model_config | {"extra": "allow"}

    name: str
    """The albumentations class name, e.g. Blur, Affine, GaussNoise; its arguments go beside
    it (`p`: the probability it is applied)."""


TransformList = list[TransformSpec]  # a custom albumentations pipeline, applied in order
# A named policy or a custom list, told apart by form, so a bad value gets one error line (the
# policy names, or what is wrong with the list) rather than one per form it failed.
Policy = Annotated[
    Annotated[PolicyName, Tag("=named")] | Annotated[TransformList, Tag("=list")],
    Discriminator(lambda v: "=list" if isinstance(v, list) else "=named"),
]


class AugmentSpec(SpecModel):
    """Training-split augmentation: a named policy or your own albumentations list (each
    searchable, together in one `policy: {choices: [...]}`), plus batch-level MixUp / CutMix.

    The named policies are registered in spec/policies.py, their magnitudes scaled by
    `magnitude`; `policy`'s description lists each, written from its transforms. Horizontal
    flips are separate (`hflip`): they change the meaning of digits and text. A custom list runs
    exactly as written: `magnitude` and `hflip` are only sampled in trials that pick a named
    policy.
    """

    # The description is built from the policy registry (what each policy runs), not written
    # out here: a new policy, or a changed one, describes itself.
    policy: Tunable[Policy] = Field(
        default="none",
        description=(
            "A named policy or a custom list of albumentations transforms; search several "
            "with {choices: [none, light, [{name: Blur}]]}. The named policies at magnitude "
            f"1 (p: probability per image): {policy_descriptions()}."
        ),
    )
    magnitude: Tunable[Annotated[float, Field(gt=0, le=3)]] = 1.0
    """Scales the named policy's magnitudes (shift, rotation, contrast …)."""
    hflip: Tunable[bool] = False
    """Random horizontal flips with a named policy: right for most photos, wrong for digits
    and text."""
    transforms: Tunable[TransformList] | None = None
    """Custom lists only (the same as giving them as policy), e.g. {choices: [[...], [...]]}."""
    mixup: Tunable[Annotated[float, Field(ge=0, le=1)]] = 0.0
    """Share of training batches mixed with MixUp."""
    mixup_alpha: Tunable[PositiveFloat] = 0.2
    """MixUp's Beta(α, α) mixing weights; used when mixup > 0."""
    cutmix: Tunable[Annotated[float, Field(ge=0, le=1)]] = 0.0
    """Share of training batches cut-mixed (mixup + cutmix ≤ 1)."""
    cutmix_alpha: Tunable[PositiveFloat] = 1.0
    """CutMix's Beta(α, α) area weights; used when cutmix > 0."""

    @field_validator("policy", "transforms", mode="after")
    @classmethod
    def _lists_build(cls, value: Any, info: ValidationInfo) -> Any:
        """Build every custom list the space holds once, so a bad transform name or argument is
        a spec error before any training, not a failed trial (in the pass with library
        checks: albumentations takes seconds to import)."""
        if not library_checks(info):
            return value
        from automl_clf.spec.transforms import check_transforms

        searched = isinstance(value, Choice)
        for index, candidate in enumerate(candidate_values(value)):
            if not isinstance(candidate, list):
                continue
            try:
                check_transforms([t.model_dump() for t in candidate])
            except ValueError as exc:
                raise ValueError(f"choices.{index}: {exc}" if searched else str(exc)) from None
        return value

    @model_validator(mode="after")
    def _one_form(self) -> AugmentSpec:
        if self.transforms is not None and self.policy != "none":
            raise ValueError(
                "give either a policy or transforms, not both; to search named policies and "
                "custom lists together, list them all in policy: {choices: [light, [...]]}"
            )
        picks = candidate_values(self.transforms if self.transforms is not None else self.policy)
        named = any(isinstance(pick, str) for pick in picks)
        if not named and (self.hflip is not False or self.magnitude != 1.0):
            raise ValueError(
                "hflip and magnitude apply to named policies, and every policy this spec can "
                "pick is a custom list, which runs as written; add {name: HorizontalFlip} to a "
                "list, or drop hflip and magnitude"
            )
        # Checked on every pair the space can produce: a trial must run the shares it sampled,
        # never a silently smaller CutMix share.
        pairs = itertools.product(candidate_values(self.mixup), candidate_values(self.cutmix))
        mix, cut = max(pairs, key=sum)
        if mix + cut > 1 + 1e-9:
            raise ValueError(
                f"mixup + cutmix are shares of batches and must sum to <= 1, but the space "
                f"reaches {mix:g} + {cut:g}; lower the high ends (or the largest choices) so "
                "they sum to at most 1"
            )
        return self
