"""One registry per extension point: the kinds of a thing by name, each written once.

Like timm's `register_model` (`timm/models/_registry.py`), a kind is added where it is implemented,
with a decorator, and everything that lists kinds reads them from its registry: the spec's
accepted values and its JSON Schema, error messages, the search's builders, the tests'
parametrisation. Looking up an unknown kind is a `SpecError` naming the close and the known
kinds, never a fallback to some default.

The registries (every one is filled on import of its module, before anything reads it):

    spec/samplers.py     SAMPLERS    study.sampler kinds (a spec class each, `build` → Optuna)
    spec/pruners.py      PRUNERS     study.pruner kinds (likewise)
    spec/policies.py     POLICIES    augment.policy names → their albumentations lists
    data/batch_augment   KERNELS     albumentations transforms run batched on the device
    spec/backbones.py    BACKBONES   autoclf's own backbones, ahead of timm's (filled by models/)
    search/storage.py    STORAGES    study.storage URL schemes → how to open and lock them
    final/formats.py     FORMATS     extra export formats → how to write and load them

This module imports nothing heavy: the spec reads it at import time.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar, Union

from pydantic import BeforeValidator, Discriminator, Field, Tag

from automl_clf.errors import SpecError

if TYPE_CHECKING:
    from automl_clf.spec.space import SpecModel

T = TypeVar("T")
M = TypeVar("M", bound="type[SpecModel]")


class Registry(Generic[T]):
    """Kind name -> entry, in registration order.

    Args:
        what: what one kind is, for messages ("sampler", "storage scheme").
        plural: its plural, when not `what` + "s".
    """

    def __init__(self, what: str, plural: str | None = None) -> None:
        self.what = what
        self.plural = plural or f"{what}s"
        self._entries: dict[str, T] = {}

    def register(self, kind: str) -> Callable[[T], T]:
        """A decorator adding its target under `kind`; a kind registered twice is an error."""

        def add(entry: T) -> T:
            if kind in self._entries:
                raise ValueError(f"{self.what} {kind!r} is registered twice")
            self._entries[kind] = entry
            return entry

        return add

    def __getitem__(self, kind: str) -> T:
        try:
            return self._entries[kind]
        except KeyError:
            raise SpecError(self.unknown(kind)) from None

    def unknown(self, kind: str) -> str:
        """`unknown sampler 'tp' (did you mean 'tpe'? known samplers: tpe, random, …)`."""
        close = difflib.get_close_matches(str(kind), list(self._entries), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown {self.what} {kind!r} ({hint}known {self.plural}: {', '.join(self)})"

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._entries.items())

    def __contains__(self, kind: object) -> bool:
        return kind in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


class SpecKinds(Registry[M]):
    """A registry of spec classes told apart by their `kind` field (`kind: Literal["tpe"] =
    "tpe"`), used as a class decorator: `@SAMPLERS.add`.

    `field(default=...)` is the pydantic type of a spec field holding one of them: a mapping
    `{kind: tpe, ...}`, or the kind alone (`sampler: random` for `{kind: random}`); a mapping
    without `kind` takes the default's. Its JSON Schema lists every member and the kinds alone.
    """

    def add(self, cls: M) -> M:
        model: type[SpecModel] = cls
        kind = model.model_fields["kind"].default
        if not isinstance(kind, str):
            raise TypeError(f"{cls.__name__} needs a default kind: kind: Literal['x'] = 'x'")
        return self.register(kind)(cls)

    def field(self, default: str) -> Any:
        """The annotated union of every registered class, for a spec field (see class doc)."""
        members = [Annotated[cls, Tag(f"={kind}")] for kind, cls in self.items()]

        def kind_of(value: Any) -> str:
            if isinstance(value, dict):
                return f"={value.get('kind', default)}"
            return f"={getattr(value, 'kind', value)}"

        def shorthand(value: Any) -> Any:
            return {"kind": value} if isinstance(value, str) else value

        def schema(schema: dict[str, Any]) -> None:  # the kind alone is accepted too
            alternatives = schema.pop("oneOf", None) or schema.pop("anyOf", [])
            schema["anyOf"] = [{"type": "string", "enum": list(self.kinds)}, *alternatives]
            schema.pop("discriminator", None)

        return Annotated[
            Union[tuple(members)],  # noqa: UP007
            Discriminator(kind_of),
            BeforeValidator(shorthand),  # runs first: the union sees a mapping
            Field(json_schema_extra=schema),
        ]
