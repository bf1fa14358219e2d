"""Augmentation: the named policies, their batched implementation against albumentations,
custom transform lists, MixUp/CutMix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import pytest
import torch

from automl_clf.data.augment import Augmenter, transform_list
from automl_clf.data.batch_augment import KERNELS, BatchAugmenter
from automl_clf.errors import TrialFailed
from automl_clf.search import run_search
from automl_clf.spec import load_spec
from automl_clf.spec.config import AugmentConfig
from automl_clf.spec.policies import POLICIES, policy_transforms
from automl_clf.spec.transforms import check_transforms
from automl_clf.train.mix import BatchMixer
from tests.conftest import tiny_spec, write_spec


def smooth_image(size: int = 16, channels: int = 1) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    plane = 128 + 100 * np.sin(xx / 3.0) * np.cos(yy / 4.0)
    return np.repeat(plane[..., None], channels, axis=2).astype(np.uint8)


# Each batched kernel against albumentations itself, with deterministic parameters (CoarseDropout,
# whose hole is random, by its own test below).
MATCHED = [
    {"name": "Affine", "rotate": (17, 17)},
    {"name": "Affine", "translate_percent": (0.1, 0.1)},
    {"name": "Affine", "scale": (1.2, 1.2)},
    {"name": "Affine", "shear": (10, 10)},
    {"name": "Affine", "rotate": -12, "scale": 0.9, "translate_percent": -0.06, "shear": 5},
    {
        "name": "RandomBrightnessContrast",
        "brightness_limit": (0.2, 0.2),
        "contrast_limit": (0.3, 0.3),
    },
    {"name": "HorizontalFlip"},
]


def test_every_batched_kernel_is_checked() -> None:
    assert {entry["name"] for entry in MATCHED} | {"CoarseDropout"} == set(KERNELS)


@pytest.mark.parametrize("entry", MATCHED)
@pytest.mark.parametrize("channels", [1, 3])
def test_batched_transforms_match_albumentations(entry: dict, channels: int) -> None:  # type: ignore[type-arg]
    image = smooth_image(channels=channels)
    expected = A.Compose([A.from_dict({"transform": {**_albu(entry), "p": 1.0}})], seed=0)(
        image=image
    )["image"]
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    got = BatchAugmenter([{**entry, "p": 1.0}])(x, torch.Generator().manual_seed(0))
    diff = np.abs(expected.astype(float) / 255 - got[0].permute(1, 2, 0).numpy())
    assert diff.max() < 0.01  # OpenCV's fixed-point bilinear weights only


def _albu(entry: dict) -> dict:  # type: ignore[type-arg]
    args = {k: v for k, v in entry.items() if k != "name"}
    return {"__class_fullname__": entry["name"], **args}


def test_batched_coarse_dropout_blacks_out_one_hole_of_the_given_size() -> None:
    x = torch.ones(32, 1, 20, 20)
    entry = {
        "name": "CoarseDropout",
        "num_holes_range": (1, 1),
        "hole_height_range": (0.2, 0.2),
        "hole_width_range": (0.3, 0.3),
        "p": 1.0,
    }
    out = BatchAugmenter([entry])(x, torch.Generator().manual_seed(0))
    assert ((out == 0).sum(dim=(1, 2, 3)) == 4 * 6).all()  # 20% × 30% of 20 px, every image


@pytest.mark.parametrize("policy", POLICIES.kinds)
@pytest.mark.parametrize("magnitude", [0.5, 1.0, 2.5])
def test_every_policy_runs_in_both_executors(policy: str, magnitude: float) -> None:
    entries = policy_transforms(policy, magnitude)
    check_transforms(entries)  # valid albumentations arguments at every magnitude
    pixels = np.stack([smooth_image(channels=3)] * 4)
    if entries:
        assert Augmenter(entries, seed=0)(pixels).shape == pixels.shape
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    out = BatchAugmenter(entries)(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1


def test_magnitude_scales_the_policy_not_its_probabilities() -> None:
    base, double = policy_transforms("medium", 1.0), policy_transforms("medium", 2.0)
    assert double[0]["rotate"] == (-30, 30) and base[0]["rotate"] == (-15, 15)
    assert [e["p"] for e in base] == [e["p"] for e in double]


def test_custom_lists_are_checked_up_front() -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown albumentations transform 'GaussianBlurr'.*Did you mean 'GaussianBlur'",
    ):
        check_transforms([{"name": "GaussianBlurr"}])
    with pytest.raises(ValueError, match=r"transforms\[0\]: Affine: invalid arguments"):
        check_transforms([{"name": "Affine", "rotte": 3}])


def test_the_resolved_augmentation_round_trips_through_albumentations() -> None:
    config = AugmentConfig(
        policy="heavy",
        magnitude=1.0,
        hflip=True,
        transforms=None,
        mixup=0.0,
        mixup_alpha=None,
        cutmix=0.0,
        cutmix_alpha=None,
    )
    serialised = Augmenter(transform_list(config), seed=0).to_dict()
    rebuilt = A.from_dict(serialised)
    names = [t.__class__.__name__ for t in rebuilt.transforms]
    assert names == ["Affine", "RandomBrightnessContrast", "CoarseDropout", "HorizontalFlip"]


def mixing_only(mixup: float, cutmix: float) -> AugmentConfig:
    """No policy, these shares of batches mixed up and cut-mixed (alphas 0.4 and 1.0)."""
    return AugmentConfig(
        policy="none",
        magnitude=1.0,
        hflip=False,
        transforms=None,
        mixup=mixup,
        mixup_alpha=0.4,
        cutmix=cutmix,
        cutmix_alpha=1.0,
    )


def test_mixup_and_cutmix_mix_images_and_labels() -> None:
    mixer = BatchMixer(mixing_only(0.5, 0.5))
    mixer.reseed(0)
    images = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 1, 4, 4).clone()
    labels = torch.arange(8)
    kinds = set()
    for _ in range(20):
        mixed = mixer(images, labels)
        assert mixed is not None  # mixup + cutmix = 1: every batch is mixed
        assert 0.0 <= mixed.weight <= 1.0
        assert sorted(mixed.partner_labels.tolist()) == list(range(8))
        cut = bool(torch.isin(mixed.images, images).all())  # cutmix copies pixels, mixup blends
        kinds.add("cutmix" if cut else "mixup")
    assert kinds == {"mixup", "cutmix"}


def test_the_mixer_honours_both_shares_and_refuses_more_than_every_batch() -> None:
    mixer = BatchMixer(mixing_only(0.3, 0.6))
    mixer.reseed(0)
    images = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 1, 4, 4).clone()
    kinds = {"none": 0, "mixup": 0, "cutmix": 0}
    for _ in range(1000):
        mixed = mixer(images, torch.arange(8))
        cut = mixed is not None and bool(torch.isin(mixed.images, images).all())
        kinds["none" if mixed is None else "cutmix" if cut else "mixup"] += 1
    assert kinds["mixup"] == pytest.approx(300, abs=50)
    assert kinds["cutmix"] == pytest.approx(600, abs=50)  # the share asked, not what was left
    with pytest.raises(TrialFailed, match=r"mixup 0.9 \+ cutmix 0.9 > 1"):
        BatchMixer(mixing_only(0.9, 0.9))


def test_a_search_over_mixup_and_cutmix_ranges_trains_the_shares_it_sampled(
    tmp_path: Path, digits_root: Path
) -> None:
    raw = tiny_spec(
        digits_root,
        tmp_path,
        study={"n_trials": 2, "pruner": "none"},
        train={"epochs": 1},
        augment={
            "policy": "none",
            "mixup": {"low": 0.1, "high": 0.5},
            "cutmix": {"low": 0.1, "high": 0.5},
            "cutmix_alpha": {"low": 0.5, "high": 2.0},
        },
    )
    result = run_search(load_spec(write_spec(tmp_path / "spec.yaml", raw)))
    assert result.n_finished == 2
    for trial in result.study.trials:
        config = trial.user_attrs["config"]["augment"]
        for name in ("mixup", "cutmix", "cutmix_alpha"):
            assert config[name] == pytest.approx(trial.params[f"augment.{name}"])
        assert config["mixup_alpha"] == 0.2  # the literal, used since mixup > 0


AFFINE = [{"name": "Affine", "rotate": [-10, 10], "p": 0.5}]
BLUR = [{"name": "Blur", "blur_limit": [3, 3], "p": 0.5}]


@pytest.mark.parametrize(
    ("field", "choices"),
    [("policy", ["none", "light", AFFINE, BLUR]), ("transforms", [AFFINE, BLUR])],
)
def test_a_search_runs_the_custom_lists_it_picks_and_records_them(
    tmp_path: Path, digits_root: Path, field: str, choices: list[Any]
) -> None:
    reordered = [{"p": 0.5, "rotate": [-10, 10], "name": "Affine"}]  # the same list
    first = [{f"augment.{field}": reordered}, {f"augment.{field}": BLUR}]
    named = [{"augment.policy": "light"}] if field == "policy" else []
    raw = tiny_spec(
        digits_root,
        tmp_path,
        study={
            "n_trials": len(first) + len(named),
            "pruner": "none",
            "try_defaults": False,
            "warm_start": first + named,
        },
        train={"epochs": 1},
        augment={"policy": "none", field: {"choices": choices}},
    )
    result = run_search(load_spec(write_spec(tmp_path / "spec.yaml", raw)))
    trials = result.study.trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * len(trials)
    for trial, expected in zip(trials, [AFFINE, BLUR], strict=False):
        config = trial.user_attrs["config"]["augment"]
        assert config["transforms"] == expected  # the list that ran, in the trial's config
        assert config["policy"] == "none" and config["hflip"] is False
        ran = trial.user_attrs["augmentation"]  # what the training session built
        assert ran["executor"] == "albumentations"
        steps = ran["albumentations"]["transform"]["transforms"]
        assert [step["__class_fullname__"] for step in steps] == [e["name"] for e in expected]
    if named:
        light = trials[2].user_attrs
        assert light["config"]["augment"]["policy"] == "light"
        assert light["config"]["augment"]["transforms"] is None
        assert light["augmentation"]["executor"] == "batched"
