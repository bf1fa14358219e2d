"""Backbone names without importing torch or timm: what `model.backbone` may name, for the spec's
checks (spec/model.py) and `autoclf backbones`.

Importing timm takes seconds (torch and torchvision come with it), and a spec's mistake should
be reported in well under one. So the names timm registers (its models, the deprecated names it
still builds, and `<model>.<tag>` for each of its pretrained weights) ship with autoclf in
models/timm_names.py, taken from the timm version written there. They answer when that is the
installed timm, whose version `importlib.metadata` reads without importing it. When the installed
timm is another version, or timm is imported already (so a model registered with timm's
`register_model` in this process counts), timm itself answers.

After a timm upgrade, `make timm-names` (python -m automl_clf.models.names) rewrites
models/timm_names.py; tests/models/test_names.py fails until it does.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib.metadata
import sys
from dataclasses import dataclass
from pathlib import Path

from automl_clf.models.registry import BACKBONES, OWN_BACKBONES

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
    """The names shipped in models/timm_names.py, with the timm version they were taken from."""
    from automl_clf.models import timm_names

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
    known without importing torch), then any registered since."""
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


def render_timm_names(names: TimmNames) -> str:
    """models/timm_names.py's text for `names`: one name a line, so an upgrade's diff reads as
    the models timm added and removed."""

    def block(values: tuple[str, ...]) -> str:
        return '"""\n' + "".join(f"{value}\n" for value in values) + '"""'

    return (
        f'"""The names timm {names.version} registers, to check backbone names without importing '
        "timm\n(models/names.py). Written by `make timm-names` (python -m "
        "automl_clf.models.names) from\nthe installed timm; do not edit.\n"
        '"""\n\n'
        f'TIMM_VERSION = "{names.version}"\n'
        f"# timm.list_models()\nMODELS = {block(names.models)}\n"
        f"# sorted(timm.get_deprecated_models())\nDEPRECATED = {block(names.deprecated)}\n"
        f"# timm.list_pretrained()\nPRETRAINED = {block(names.pretrained)}\n"
    )


def main() -> None:
    """Rewrite models/timm_names.py from the installed timm."""
    names = TimmNames.from_timm()
    SHIPPED_PATH.write_text(render_timm_names(names), encoding="utf-8")
    print(
        f"wrote {SHIPPED_PATH}: timm {names.version}, {len(names.models)} models, "
        f"{len(names.deprecated)} deprecated names, {len(names.pretrained)} pretrained weights"
    )


if __name__ == "__main__":
    main()
