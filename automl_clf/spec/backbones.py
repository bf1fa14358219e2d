"""Backbone names without importing torch or timm: what `model.backbone` may name and which
pretrained weights exist, for the spec's checks (spec/model.py) and `autoclf backbones`.

The spec room holds the names (not the model room, which builds the networks and imports
torch): the spec is below the models in the layering (docs/architecture.md), and knowing a name
is all its checks need. Our own backbones are named in `OWN_BACKBONES` here and registered in
`BACKBONES`, which models/registry.py fills with their entrypoints.

Importing timm takes seconds (torch and torchvision come with it), and a spec's mistake should
be reported in well under one. So the names timm registers (its models, the deprecated names it
still builds, and `<model>.<tag>` for each of its pretrained weights) ship with autoclf in
spec/timm_names.py, taken from the timm version written there. They answer when that is the
installed timm, whose version `importlib.metadata` reads without importing it. When the installed
timm is another version, or timm is imported already (so a model registered with timm's
`register_model` in this process counts), timm itself answers.

After a timm upgrade, `make timm-names` (python -m automl_clf.spec.backbones) rewrites
spec/timm_names.py; tests/spec/test_backbones.py fails until it does.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib.metadata
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automl_clf.spec.model import PLAIN_CNN, TIMM_HUB_ORG, hub_repo
from automl_clf.spec.registry import Registry

# Our backbones by name -> the module that registers it (importing one imports torch):
# models/factory.py imports each, and the spec checks names against these without importing.
OWN_BACKBONES = {PLAIN_CNN: "automl_clf.models.cnn"}
# Our backbones' entries (models/registry.py `Backbone`, registered by `register_backbone`):
# kept here so that a backbone registered at run time is a name the spec knows.
BACKBONES: Registry[Any] = Registry("backbone")

SHIPPED_PATH = Path(__file__).with_name("timm_names.py")


@dataclass(frozen=True)
class TimmNames:
    """The names one timm version registers, answering as timm's own functions do."""

    version: str
    models: tuple[str, ...]  # timm.list_models(): architectures, in timm's natural order
    deprecated: tuple[str, ...]  # timm.get_deprecated_models(): old names it maps to new ones
    pretrained: tuple[str, ...]  # timm.list_pretrained(): `<model>.<tag>`, in timm's order

    @classmethod
    def from_timm(cls) -> TimmNames:
        """The installed timm's names, models registered in this process included."""
        import timm

        return cls(
            version=timm.__version__,
            models=tuple(timm.list_models()),
            deprecated=tuple(sorted(timm.models.get_deprecated_models())),
            pretrained=tuple(timm.list_pretrained()),
        )

    @functools.cached_property
    def _architectures(self) -> frozenset[str]:
        return frozenset(self.models) | frozenset(self.deprecated)

    @functools.cached_property
    def _with_weights(self) -> frozenset[str]:
        """Every `<model>.<tag>` with weights, and every model that has some."""
        return frozenset(self.pretrained) | {name.partition(".")[0] for name in self.pretrained}

    def is_model(self, name: str) -> bool:
        """timm.is_model: the architecture, any tag ignored, is registered."""
        return name.partition(".")[0] in self._architectures

    def is_pretrained(self, name: str) -> bool:
        """timm.is_model_pretrained: a model with some pretrained weights, or a `<model>.<tag>`
        of weights timm has."""
        return name in self._with_weights

    def list_models(self, pattern: str = "*") -> list[str]:
        """timm.list_models(pattern): the architectures matching a shell-style pattern."""
        return [name for name in self.models if fnmatch.fnmatch(name, pattern)]

    def list_pretrained(self, pattern: str = "*") -> list[str]:
        """timm.list_pretrained(pattern): a pattern without a tag also matches every tag of
        the models it matches (`resnet18` lists `resnet18.a1_in1k`, ...)."""
        base, _, tag = pattern.partition(".")
        patterns = [pattern] if tag else [f"{base}.*", pattern]
        return [n for n in self.pretrained if any(fnmatch.fnmatch(n, p) for p in patterns)]


@functools.cache
def installed_timm_version() -> str | None:
    """The installed timm's version, read from its package metadata (timm is not imported)."""
    try:
        return importlib.metadata.version("timm")
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def shipped_names() -> TimmNames:
    """The names shipped in spec/timm_names.py, with the timm version they were taken from."""
    from automl_clf.spec import timm_names

    return TimmNames(
        version=timm_names.TIMM_VERSION,
        models=tuple(timm_names.MODELS.split()),
        deprecated=tuple(timm_names.DEPRECATED.split()),
        pretrained=tuple(timm_names.PRETRAINED.split()),
    )


def timm_names(*, import_timm: bool = True) -> TimmNames | None:
    """timm's names, as cheaply as they are known to be right: the shipped ones when they are
    the installed timm's and timm is not imported yet, else timm's own; None when that would
    import timm and `import_timm` is False (the caller checks again later, with timm)."""
    if "timm" not in sys.modules:
        shipped = shipped_names()
        if shipped.version == installed_timm_version():
            return shipped
        if not import_timm:
            return None
    return TimmNames.from_timm()


def own_backbones() -> list[str]:
    """Our own backbones' names: those models/factory.py registers (named in OWN_BACKBONES,
    known without importing torch), then any registered since (models/registry.py)."""
    return list(dict.fromkeys([*OWN_BACKBONES, *BACKBONES]))


def list_backbones(pattern: str = "*", *, pretrained: bool = False) -> list[str]:
    """Our backbones (`cnn`), then every timm model, whose names match the shell-style
    pattern; with `pretrained`, timm's pretrained weights instead, as `<model>.<tag>` (each a
    backbone name, and `timm/<model>.<tag>` its Hub repository)."""
    names = timm_names()
    assert names is not None  # timm_names imports timm rather than answer None
    if pretrained:
        return names.list_pretrained(pattern)
    own = [name for name in own_backbones() if fnmatch.fnmatch(name, pattern)]
    return own + names.list_models(pattern)


def check_backbone_name(name: str, *, import_timm: bool = True) -> None:
    """Raise a ValueError naming close matches when `name` is neither one of our backbones
    (models/registry.py) nor a timm model (nor `<model>.<tag>` of timm's pretrained weights).

    Reads the names without importing torch or timm; where they can only come
    from importing timm (another timm version than the shipped names') and `import_timm` is
    False, the name is left for the next pass to check.
    """
    own = own_backbones()
    if name in own:
        return
    names = timm_names(import_timm=import_timm)
    if names is None:
        return
    if names.is_model(name):
        if "." in name:  # `<model>.<tag>`: timm's pretrained weights of that name
            check_tag(name, names)
        return
    close = difflib.get_close_matches(name, [*own, *names.models], n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    prefix = re.match(r"[A-Za-z_]*", name)
    pattern = f"{prefix.group(0) if prefix else ''}*"
    raise ValueError(
        f"Unknown backbone {name!r}.{hint} List them with: autoclf backbones '{pattern}'"
    )


def check_has_pretrained(backbone: str, names: TimmNames) -> None:
    """Raise a ValueError when timm has no pretrained weights for `backbone`
    (`model.pretrained: true` would have nothing to load)."""
    if not names.is_pretrained(backbone):
        raise ValueError(
            f"pretrained: timm has no pretrained weights for {backbone!r}; list the models "
            f"that have with: autoclf backbones --pretrained '{architecture_of(backbone)}*'"
        )


def check_repo_architecture(pretrained: str, backbone: str) -> None:
    """Raise a ValueError when `pretrained` names timm's weights of another architecture than
    `backbone` (other repositories say theirs in their config.json, read before any trial)."""
    repo = hub_repo(pretrained) if not Path(pretrained).is_file() else None
    name = timm_repo_name(repo[0]) if repo is not None else None
    if name is not None and architecture_of(name) != architecture_of(backbone):
        raise ValueError(other_architecture(pretrained, architecture_of(name), backbone))


def check_tag(name: str, names: TimmNames) -> None:
    """Raise a ValueError when `name` (`<model>.<tag>`) names a tag timm does not have."""
    model = architecture_of(name)
    tags = names.list_pretrained(f"{model}.*")
    if name in tags:
        return
    close = difflib.get_close_matches(name, tags, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"Unknown pretrained tag {name.partition('.')[2]!r} for {model!r}.{hint} List them "
        f"with: autoclf backbones --pretrained '{model}.*'"
    )


def timm_repo_name(repo_id: str) -> str | None:
    """`<model>.<tag>` when `repo_id` is timm's repository of weights timm knows
    (timm/<model>.<tag>), else None."""
    import timm

    org, _, name = repo_id.partition("/")
    if org != TIMM_HUB_ORG or "." not in name or not timm.is_model(name):
        return None
    try:
        cfg = timm.get_pretrained_cfg(name)
    except RuntimeError:  # a tag this timm does not have
        return None
    return name if cfg is not None and cfg.hf_hub_id == repo_id else None


def other_architecture(source: str, architecture: str, backbone: str) -> str:
    return (
        f"model.pretrained {source} holds {architecture!r} weights, which do not fit backbone "
        f"{backbone!r}; set model.backbone: {architecture}, or choose other weights"
    )


def architecture_of(name: str) -> str:
    """The architecture of a timm name: `resnet18` of `resnet18.a1_in1k`."""
    return name.partition(".")[0]


def render_timm_names(names: TimmNames) -> str:
    """spec/timm_names.py's text for `names`: one name a line, so an upgrade's diff reads as
    the models timm added and removed."""

    def block(values: tuple[str, ...]) -> str:
        return '"""\n' + "".join(f"{value}\n" for value in values) + '"""'

    return (
        f'"""The names timm {names.version} registers, to check backbone names without importing '
        "timm\n(spec/backbones.py). Written by `make timm-names` (python -m "
        "automl_clf.spec.backbones) from\nthe installed timm; do not edit.\n"
        '"""\n\n'
        f'TIMM_VERSION = "{names.version}"\n'
        f"# timm.list_models()\nMODELS = {block(names.models)}\n"
        f"# sorted(timm.get_deprecated_models())\nDEPRECATED = {block(names.deprecated)}\n"
        f"# timm.list_pretrained()\nPRETRAINED = {block(names.pretrained)}\n"
    )


def main() -> None:
    """Rewrite spec/timm_names.py from the installed timm."""
    names = TimmNames.from_timm()
    SHIPPED_PATH.write_text(render_timm_names(names), encoding="utf-8")
    print(
        f"wrote {SHIPPED_PATH}: timm {names.version}, {len(names.models)} models, "
        f"{len(names.deprecated)} deprecated names, {len(names.pretrained)} pretrained weights"
    )


if __name__ == "__main__":
    main()
