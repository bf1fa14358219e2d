"""Pretrained weights the way timm users get them (models/pretrained.py), from a real local
Hugging Face cache (tests/hub.py), offline; and the errors when they are not there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from safetensors.torch import load_file

from automl_clf.errors import SpecError, WeightsUnavailable
from automl_clf.models.factory import build_model, check_backbones, model_mean_std
from automl_clf.spec import FixedParams, load_spec, parse_spec, resolve
from automl_clf.spec.config import ModelConfig
from automl_clf.spec.describe import describe_space
from tests.conftest import REPO, tiny_spec, write_spec
from tests.hub import write_other_repo

# Each stand-in's first layer: the tensor copied unchanged from the file into an RGB model.
STEMS = {
    "test_resnet": "conv1.0.weight",
    "test_efficientnet": "conv_stem.weight",
    "test_vit": "patch_embed.proj.weight",
}


def pretrained(backbone: str, value: bool | str) -> ModelConfig:
    return ModelConfig.plain_timm(backbone).model_copy(update={"pretrained": value})


def cached_weights(cache: Path, repo: str) -> dict[str, torch.Tensor]:
    folder = cache / f"models--{repo.replace('/', '--')}" / "snapshots"
    return load_file(str(next(folder.glob("*/model.safetensors"))))


@pytest.mark.parametrize("backbone", sorted(STEMS))
def test_true_loads_the_default_weights_from_the_local_hub_cache(
    offline_hub: Path, backbone: str
) -> None:
    model = build_model(pretrained(backbone, True), n_classes=3, in_chans=3, image_size=32)
    saved = cached_weights(offline_hub, f"timm/{backbone}.r160_in1k")
    stem = STEMS[backbone]
    assert torch.equal(model.state_dict()[stem], saved[stem])
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)  # a new head, at 32 px not 160
    assert model.pretrained_cfg["hf_hub_id"] == f"timm/{backbone}.r160_in1k"  # type: ignore[index]


@pytest.mark.parametrize(
    "value", ["timm/test_vit.r160_in1k", "hf-hub:timm/test_vit.r160_in1k", "cache"]
)
def test_hub_repository_forms_and_cache_load_the_same_weights(
    offline_hub: Path, value: str
) -> None:
    model = build_model(pretrained("test_vit", value), n_classes=3, in_chans=3, image_size=16)
    saved = cached_weights(offline_hub, "timm/test_vit.r160_in1k")
    stem = "patch_embed.proj.weight"
    assert torch.equal(model.state_dict()[stem], saved[stem])
    # the position embeddings were resampled from 160 px (10×10 patches) to 16 px (1×1)
    assert model.state_dict()["pos_embed"].shape[1] < saved["pos_embed"].shape[1]


def test_a_hub_repository_brings_its_own_normalisation(
    offline_hub: Path, tmp_path: Path, digits_root: Path
) -> None:
    """The mean and std come from the pretrained config that travels with the weights (the
    repository's config.json), not from a lookup of the backbone's name."""
    from automl_clf.data import load_dataset
    from automl_clf.train import train_config

    cfg = {"mean": [0.2, 0.3, 0.4], "std": [0.5, 0.5, 0.5], "num_classes": 7}
    cfg |= {"input_size": [3, 32, 32], "fixed_input_size": True, "first_conv": "patch_embed.proj"}
    write_other_repo(offline_hub, "someone/digits-vit", "test_vit", cfg)
    model = {"backbone": "test_vit", "pretrained": "hf-hub:someone/digits-vit", "dropout": 0.0}
    raw = tiny_spec(digits_root, tmp_path, model=model)
    raw["data"] |= {"image_size": 16, "channels": 3, "normalize": "auto"}
    spec = parse_spec(raw, base_dir=tmp_path)
    config = resolve(spec, FixedParams({"train.lr": 0.01, "augment.policy": "none"}))
    trained = train_config(config, load_dataset(spec.data), max_epochs=1)
    assert trained.preprocessing.mean == pytest.approx((0.2, 0.3, 0.4))
    assert model_mean_std(trained.fit.model) == ((0.2, 0.3, 0.4), (0.5, 0.5, 0.5))


def test_random_weights_keep_the_backbones_pretrained_normalisation() -> None:
    """`data.normalize: auto` without weights: the backbone's default pretrained config."""
    model = build_model(
        ModelConfig.plain_timm("test_efficientnet"), n_classes=2, in_chans=3, image_size=16
    )
    assert model_mean_std(model) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_pretrained_true_is_accepted_and_the_plain_cnn_trains_from_scratch(
    tmp_path: Path, digits_root: Path
) -> None:
    """The issue: `pretrained: true` was refused ('Input should be a valid string')."""
    model = {"backbone": {"choices": ["cnn", "test_resnet"]}, "pretrained": True}
    model["transfer"] = {"choices": ["finetune", "freeze"]}
    spec = parse_spec(tiny_spec(digits_root, tmp_path, model=model), base_dir=tmp_path)
    assert spec.model.pretrained is True
    base = {"model.dropout": 0.1, "model.cnn.filters": "[4]", "train.lr": 0.01}
    base["augment.policy"] = "none"
    cnn = resolve(spec, FixedParams({**base, "model.backbone": "cnn"}))
    timm_trial = resolve(
        spec, FixedParams({**base, "model.backbone": "test_resnet", "model.transfer": "freeze"})
    )
    assert cnn.model.pretrained is None and timm_trial.model.pretrained is True
    transfer = next(p for p in describe_space(spec).params if p.name == "model.transfer")
    assert transfer.condition == "model.backbone=test_resnet"  # never sampled for the CNN


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            {"backbone": "test_mambaout", "pretrained": True},
            "model: pretrained: timm has no pretrained weights for 'test_mambaout'; list the "
            "models that have with: autoclf backbones --pretrained 'test_mambaout*'",
        ),
        (
            {"backbone": "cnn", "pretrained": True},
            "the only backbone is the plain CNN, which has none",
        ),
        (
            {"backbone": "test_efficientnet", "pretrained": "timm/test_resnet.r160_in1k"},
            "model.pretrained timm/test_resnet.r160_in1k holds 'test_resnet' weights, which do "
            "not fit backbone 'test_efficientnet'; set model.backbone: test_resnet",
        ),
        (
            {"backbone": "test_resnet.nope"},
            "Unknown pretrained tag 'nope' for 'test_resnet'. Did you mean "
            "'test_resnet.r160_in1k'? List them with: autoclf backbones --pretrained "
            "'test_resnet.*'",
        ),
        (
            {"backbone": "test_resnet", "pretrained": "hf-hub:not a repo"},
            "'hf-hub:not a repo' is not a Hugging Face Hub repository: write hf-hub:<org>/<name>",
        ),
    ],
)
def test_pretrained_mistakes_are_spec_errors(
    tmp_path: Path, digits_root: Path, model: dict[str, object], message: str
) -> None:
    with pytest.raises(SpecError) as error:
        load_spec(write_spec(tmp_path / "s.yaml", tiny_spec(digits_root, tmp_path, model=model)))
    assert message in str(error.value)


def test_a_backbone_tag_picks_those_weights(offline_hub: Path, tmp_path: Path) -> None:
    config = pretrained("test_resnet.r160_in1k", True)
    model = build_model(config, n_classes=2, in_chans=1, image_size=16)  # a 1-channel stem
    assert model.pretrained_cfg["tag"] == "r160_in1k"  # type: ignore[index]


def test_cache_never_downloads_even_online(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # it fails before asking the Hub
    with pytest.raises(WeightsUnavailable, match=r"model\.pretrained: cache never downloads"):
        build_model(pretrained("test_resnet", "cache"), n_classes=2, in_chans=3, image_size=16)


def test_check_backbones_names_every_backbone_without_weights(
    tmp_path: Path, digits_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    model = {"backbone": {"choices": ["test_resnet", "test_vit"]}, "pretrained": True}
    raw = tiny_spec(digits_root, tmp_path, model=model)
    raw["data"] |= {"image_size": 16}
    with pytest.raises(WeightsUnavailable) as error:
        check_backbones(parse_spec(raw, base_dir=tmp_path))
    assert "timm/test_resnet.r160_in1k" in str(error.value)
    assert "timm/test_vit.r160_in1k" in str(error.value)


def autoclf(args: list[str], cache: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own, with the Hugging Face cache and offline mode given as a
    user gives them: environment variables, read by huggingface_hub at import."""
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "COLUMNS": "500"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "automl_clf.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


@pytest.mark.slow
def test_weights_come_from_hf_hub_cache_and_missing_ones_stop_before_any_trial(
    hub_cache: Path, tmp_path: Path, digits_root: Path
) -> None:
    model = {"backbone": {"choices": ["test_resnet", "test_vit"]}, "pretrained": True}
    raw = tiny_spec(digits_root, tmp_path, model=model, study={"n_trials": 1})
    raw["data"] |= {"image_size": 16, "channels": 3}
    raw["train"] |= {"epochs": 1}
    spec = write_spec(tmp_path / "photos.yaml", raw)

    empty = tmp_path / "empty-cache"
    missing = autoclf(["search", str(spec)], empty, tmp_path)
    assert missing.returncode == 2, missing.stderr
    line = missing.stderr.strip()
    assert len(line.splitlines()) == 1, line  # one line, no traceback
    assert line.startswith("error: pretrained weights for 'test_resnet' are not on this machine")
    assert (
        "timm/test_resnet.r160_in1k (model.safetensors or pytorch_model.bin) is not in the "
        f"Hugging Face cache ({empty}) and HF_HUB_OFFLINE is set" in line
    )
    assert "`hf download timm/test_resnet.r160_in1k model.safetensors`" in line
    assert "pretrained weights for 'test_vit'" in line  # every missing backbone at once
    assert (
        not (tmp_path / "tiny.db").exists()
        or not optuna.load_study(
            study_name="tiny", storage=f"sqlite:///{tmp_path / 'tiny.db'}"
        ).trials
    )

    found = autoclf(["search", str(spec)], hub_cache, tmp_path)
    assert found.returncode == 0, found.stderr
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tiny.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]


def test_an_unreachable_hub_fails_the_next_repository_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Online mode with no network: once the Hub could not be reached (after huggingface_hub's
    ~23 s of retries), the next backbone's weights fail with the same reason, without asking."""
    import time

    from huggingface_hub import constants

    from automl_clf.models import pretrained as module

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    reason = "the Hub cannot be reached ([Errno -2] Name or service not known)"
    monkeypatch.setitem(module._unreachable, "hub", (time.monotonic(), reason))
    with pytest.raises(WeightsUnavailable) as error:
        build_model(pretrained("test_vit", True), n_classes=2, in_chans=3, image_size=16)
    assert "timm/test_vit.r160_in1k (model.safetensors or pytorch_model.bin) is not in the " in (
        str(error.value)
    )
    assert reason in str(error.value)
    assert "`hf download timm/test_vit.r160_in1k model.safetensors`" in str(error.value)
