"""A real Hugging Face cache for tests, so pretrained weights load offline exactly as for a user.

`write_hub_repo` lays files out the way huggingface_hub's downloads do (and `hf download`):

    <cache>/models--<org>--<name>/refs/main               the commit the main branch points at
    <cache>/models--<org>--<name>/blobs/<sha256>          each file's bytes, named by content
    <cache>/models--<org>--<name>/snapshots/<commit>/<f>  a relative symlink to its blob

The weights are a timm `test_*` model's, freshly initialised from a seed and shaped as its
pretrained config says (`timm.list_pretrained('test_*')` lists the tags, all `r160_in1k`, 1,000
classes, RGB): what `timm/<model>.r160_in1k` holds, without the network.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import save

# The stand-ins the tests load: a resnet, an efficientnet and a ViT, as specs/photos.yaml has.
STAND_INS = ("test_resnet.r160_in1k", "test_efficientnet.r160_in1k", "test_vit.r160_in1k")


def write_hub_repo(cache: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """Put `files` into the cache as repository `repo_id`'s main branch; its snapshot folder."""
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()  # any 40 hex digits name a commit
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (folder / "blobs").mkdir(exist_ok=True)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    for name, data in files.items():
        blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / name
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


def timm_weights(name: str, seed: int = 0, **kwargs: Any) -> dict[str, torch.Tensor]:
    """A state dict for timm's `name` (`<model>.<tag>`) as its pretrained config describes the
    network, deterministic from `seed`; `kwargs` change it (e.g. `num_classes`)."""
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, **kwargs)
    return {key: value.contiguous() for key, value in model.state_dict().items()}


def write_timm_weights(cache: Path, name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """timm's repository of `name` (timm/<model>.<tag>) in the cache; the weights written."""
    weights = timm_weights(name, seed)
    repo_id = timm.get_pretrained_cfg(name).hf_hub_id
    write_hub_repo(cache, repo_id, {"model.safetensors": save(weights)})
    return weights


def write_other_repo(
    cache: Path, repo_id: str, architecture: str, pretrained_cfg: dict[str, Any], seed: int = 1
) -> dict[str, torch.Tensor]:
    """A timm-format repository of someone else's weights (as timm's `push_to_hf_hub` writes
    it: config.json with the architecture and pretrained config, and model.safetensors)."""
    n_classes = int(pretrained_cfg.get("num_classes", 1000))
    weights = timm_weights(architecture, seed, num_classes=n_classes)
    config = {"architecture": architecture, "num_classes": n_classes}
    config["pretrained_cfg"] = pretrained_cfg
    files = {"config.json": json.dumps(config).encode(), "model.safetensors": save(weights)}
    write_hub_repo(cache, repo_id, files)
    return weights


# The test_* model standing in for a real timm model of each family a shipped spec searches.
_FAMILIES = {
    "resnet": "test_resnet",
    "efficientnet": "test_efficientnet",
    "mobilenet": "test_efficientnet",
    "vit": "test_vit",
    "deit": "test_vit",
}


def with_stand_ins(raw: dict[str, Any]) -> dict[str, Any]:
    """A spec mapping with each real timm backbone replaced by its test_* stand-in (whose
    weights `hub_cache` holds), so a spec of pretrained models runs here, offline, in seconds."""

    def stand_in(name: str) -> str:
        family = next((f for f in _FAMILIES if name.startswith(f)), None)
        if family is None:
            raise ValueError(f"no test stand-in for {name!r}: add its family to tests/hub.py")
        return _FAMILIES[family]

    backbone = raw["model"]["backbone"]
    if isinstance(backbone, dict):
        names = [stand_in(name) for name in backbone["choices"]]
        replaced: Any = {"choices": list(dict.fromkeys(names))}
    else:
        replaced = stand_in(backbone)
    return {**raw, "model": {**raw["model"], "backbone": replaced}}
