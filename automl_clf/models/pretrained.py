"""Pretrained weights, found the way timm users get them, and loaded by timm itself.

`model.pretrained` (spec/model.py) names where a backbone's weights come from:

    true                         the backbone's default pretrained weights (timm's pretrained
                                 config for the name: `resnet18` -> timm/resnet18.a1_in1k; a tag
                                 in the name, `resnet18.tv_in1k`, picks other weights)
    cache                        the same, only if already in the local cache (never downloaded)
    timm/<model>.<tag>           that repository of timm's weights on the Hugging Face Hub
    hf-hub:<org>/<name>[@rev]    any timm-format Hub repository (its config.json and weights)
    a path                       a local .safetensors, or a torch file read with weights_only

Hub weights live in the Hugging Face cache (`HF_HOME`, `HF_HUB_CACHE`), in the layout
huggingface_hub writes, so weights fetched by timm, `hf download` or another tool are found
here and the other way round. A file missing from the cache is downloaded into it with
huggingface_hub (exactly what `timm.create_model(..., pretrained=True)` does) unless
`HF_HUB_OFFLINE` is set or the spec says `cache`; once cached it is read from there without
asking the network again, so every trial of a study starts from the same bytes. Weights that
are neither cached nor downloadable raise `WeightsUnavailable`, naming the model, the
repository and file, and the command that fetches them: the model factory asks for every
backbone a spec can pick before the first trial, so that is one line and exit 2, never a failed
trial. (The few old timm weights published only at a URL go to torch hub's cache likewise.)

Loading is timm's own (`create_model(pretrained=True)` with the found file as the pretrained
config's `file`): it adapts the stem to the input channels, drops a classifier of another size,
and resamples a ViT's position embeddings to the image size. The pretrained config that
describes the weights (mean, std, input size) travels with the built model as
`model.pretrained_cfg`, as in timm: timm's for its own weights, a Hub repository's own
config.json for any other.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl_clf.errors import TrialFailed, WeightsUnavailable
from automl_clf.spec.backbones import architecture_of, other_architecture, timm_repo_name
from automl_clf.spec.model import PRETRAINED_CACHE, hub_repo

if TYPE_CHECKING:
    pass

# What timm looks for in a Hub repository when its pretrained config names no file: the
# safetensors file first, then the pickled one (timm/models/_hub.py, load_state_dict_from_hf).
DEFAULT_HUB_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class Weights:
    """Pretrained weights on this machine, and how timm builds the network that takes them."""

    file: Path
    model_name: str  # what timm builds: the backbone, or `<model>.<tag>` for timm's own repos
    # A repository's own pretrained config (its config.json); None: timm's for `model_name`.
    pretrained_cfg: dict[str, Any] | None
    source: str  # for messages: the repository id or the file


def find_weights(backbone: str, pretrained: bool | str) -> Weights:
    """The weights `pretrained` names for `backbone`, fetched into the local cache when they
    are not there yet (unless `pretrained` is `cache` or `HF_HUB_OFFLINE` is set).

    Raises:
        WeightsUnavailable: not on this machine and not downloadable (the message says how to
            fetch them).
        TrialFailed: the backbone has no pretrained weights, or a repository holds another
            architecture's or none of the files timm reads.
    """
    if pretrained is True or pretrained == PRETRAINED_CACHE:
        return _timm_weights(backbone, backbone, None, cache_only=pretrained == PRETRAINED_CACHE)
    assert isinstance(pretrained, str)
    repo = hub_repo(pretrained) if not Path(pretrained).is_file() else None
    if repo is None:
        path = Path(pretrained)
        if not path.is_file():
            raise WeightsUnavailable(
                f"pretrained weights file not found: {path} (model.pretrained); restore it, or "
                "point model.pretrained at another file"
            )
        return Weights(path, backbone, None, str(path))
    repo_id, revision = repo
    known = timm_repo_name(repo_id)
    if known is not None:
        return _timm_weights(backbone, known, revision, cache_only=False)
    return _repo_weights(backbone, repo_id, revision)


def _timm_weights(backbone: str, name: str, revision: str | None, *, cache_only: bool) -> Weights:
    """timm's pretrained weights for `name` (`<model>` or `<model>.<tag>`), where its pretrained
    config says they are: a Hub repository (preferred, as timm prefers it) or a URL."""
    import timm

    cfg = timm.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise TrialFailed(
            f"timm has no pretrained weights for {name!r}; list the models that have with: "
            f"autoclf backbones --pretrained '{architecture_of(name)}*'"
        )
    if cfg.hf_hub_id:
        repo_id, _, pinned = cfg.hf_hub_id.partition("@")
        files = _weight_files(cfg.hf_hub_filename)
        hub = _Hub(backbone, repo_id, revision or pinned or None, cache_only)
        return Weights(hub.file(files), name, None, repo_id)
    return Weights(_url_file(backbone, str(cfg.url), cache_only), name, None, str(cfg.url))


def _repo_weights(backbone: str, repo_id: str, revision: str | None) -> Weights:
    """A timm-format Hub repository that timm does not list: its config.json names the
    architecture and carries the pretrained config (mean, std, input size, weights file)."""
    hub = _Hub(backbone, repo_id, revision, cache_only=False)
    config_file = hub.file(("config.json",))
    try:
        config = json.loads(config_file.read_text())
        cfg = dict(config.get("pretrained_cfg") or {})
        architecture = str(config["architecture"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TrialFailed(
            f"{repo_id}: its config.json is not a timm model's (no architecture and "
            f"pretrained_cfg: {exc}); point model.pretrained at its weights file instead"
        ) from None
    if architecture_of(architecture) != architecture_of(backbone):
        raise TrialFailed(other_architecture(f"hf-hub:{repo_id}", architecture, backbone))
    import timm
    from timm.models import PretrainedCfg

    known = {f.name for f in fields(PretrainedCfg)}
    cfg = {k: v for k, v in cfg.items() if k in known and k not in ("source", "file", "url")}
    file = hub.file(_weight_files(cfg.get("hf_hub_filename")))
    # on the architecture's own config, for what the repository leaves out (e.g. which layer is
    # the classifier, that timm replaces for another number of classes)
    default = timm.get_pretrained_cfg(backbone, allow_unregistered=True)
    base = default.to_dict() if default is not None else {}
    return Weights(file, backbone, {**base, **cfg, "hf_hub_id": repo_id}, repo_id)


# When the Hub last could not be reached from this process (time.monotonic(), seconds) and why:
# huggingface_hub retries a failed connection for ~23 s per file, so the next repository within
# UNREACHABLE_S fails at once with the same reason instead of waiting as long again.
UNREACHABLE_S = 60.0
_unreachable: dict[str, tuple[float, str]] = {}


@dataclass(frozen=True)
class _Hub:
    """One Hugging Face Hub repository, read through the local cache."""

    backbone: str
    repo_id: str
    revision: str | None
    cache_only: bool  # `model.pretrained: cache`

    def file(self, names: tuple[str, ...]) -> Path:
        """The first of `names` in the cache, else downloaded into it (the first the
        repository has), else `WeightsUnavailable`."""
        import huggingface_hub
        from huggingface_hub import constants

        for name in names:
            found = huggingface_hub.try_to_load_from_cache(
                self.repo_id, name, revision=self.revision
            )
            if isinstance(found, str):  # not None, nor the marker of a file known to be absent
                return Path(found)
        if self.cache_only:
            raise WeightsUnavailable(
                self._missing(names, "model.pretrained: cache never downloads")
            )
        if constants.HF_HUB_OFFLINE:
            raise WeightsUnavailable(self._missing(names, "HF_HUB_OFFLINE is set"))
        when, why = _unreachable.get("hub", (-UNREACHABLE_S, ""))
        if time.monotonic() - when < UNREACHABLE_S:
            raise WeightsUnavailable(self._missing(names, why))
        # huggingface_hub's retry notices are lines of noise before the one-line error
        hub_log = logging.getLogger("huggingface_hub")
        level = hub_log.level
        hub_log.setLevel(logging.ERROR)
        try:
            return self._download(names)
        finally:
            hub_log.setLevel(level)

    def _download(self, names: tuple[str, ...]) -> Path:
        import huggingface_hub
        from huggingface_hub.errors import (
            EntryNotFoundError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        for name in names:
            try:
                return Path(
                    huggingface_hub.hf_hub_download(self.repo_id, name, revision=self.revision)
                )
            except LocalEntryNotFoundError as exc:  # the Hub cannot be reached
                cause = exc.__cause__ or exc.__context__ or exc
                reason = f"the Hub cannot be reached ({first_line(cause)})"
                _unreachable["hub"] = (time.monotonic(), reason)
                raise WeightsUnavailable(self._missing(names, reason)) from None
            except EntryNotFoundError:
                continue  # the repository has the next file instead
            except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
                raise WeightsUnavailable(
                    f"{self.what}: the Hugging Face Hub has no repository {self._at} "
                    f"({first_line(exc)}); check the name (autoclf backbones --pretrained "
                    "lists timm's), or log in with `hf auth login` if it is private or gated"
                ) from None
            except (HfHubHTTPError, OSError) as exc:  # the server, or a full or read-only cache
                raise WeightsUnavailable(
                    f"{self.what}: downloading {self.repo_id} ({name}) into the Hugging Face "
                    f"cache ({hub_cache_dir()}) failed: {first_line(exc)}"
                ) from None
        raise TrialFailed(
            f"{self.what}: the Hub repository {self._at} has none of {', '.join(names)}; "
            "point model.pretrained at its weights file instead"
        )

    @property
    def what(self) -> str:
        return f"pretrained weights for {self.backbone!r}"

    @property
    def _at(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "")

    def _missing(self, names: tuple[str, ...], why: str) -> str:
        revision = f" --revision {self.revision}" if self.revision else ""
        fetch = f"hf download {self.repo_id} {names[0]}{revision}"
        return (
            f"{self.what} are not on this machine: {self._at} ({' or '.join(names)}) is not in "
            f"the Hugging Face cache ({hub_cache_dir()}) and {why}; fetch it with `{fetch}` "
            "(`huggingface-cli download` before huggingface_hub 1.0) where there is network, "
            "into this cache (HF_HOME / HF_HUB_CACHE), or point model.pretrained at a local "
            "weights file"
        )


def _url_file(backbone: str, url: str, cache_only: bool) -> Path:
    """Old timm weights published only at a URL: torch hub's checkpoint cache, as timm keeps
    them (`TORCH_HOME`), downloaded there when allowed."""
    import torch
    from huggingface_hub import constants

    path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if path.is_file():
        return path
    why = None
    if cache_only:
        why = "model.pretrained: cache never downloads"
    elif constants.HF_HUB_OFFLINE:
        why = "HF_HUB_OFFLINE is set"
    if why is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(path), progress=True)
            return path
        except OSError as exc:  # urllib's URLError is an OSError
            why = f"downloading it failed ({first_line(exc)})"
    raise WeightsUnavailable(
        f"pretrained weights for {backbone!r} are not on this machine: {path} is missing and "
        f"{why}; fetch it with `curl -L -o {path} {url}` where there is network, or point "
        "model.pretrained at a local weights file"
    )


def _weight_files(filename: str | None) -> tuple[str, ...]:
    """The files timm would try for a pretrained config's `hf_hub_filename`: a safetensors
    twin of a .bin first."""
    if not filename:
        return DEFAULT_HUB_FILES
    if filename.endswith(".bin"):
        return (filename.removesuffix(".bin") + ".safetensors", filename)
    return (filename,)


def hub_cache_dir() -> str:
    """The Hugging Face cache folder this process reads (HF_HUB_CACHE, else HF_HOME/hub)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def first_line(exc: BaseException) -> str:
    """An exception's first line, at most 200 characters: enough for a one-line error."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
