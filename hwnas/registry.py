"""`Registry`: the one shape of every name -> implementation table (backends, export formats,
searchers, tasks, space presets), as timm's model registry: names in registration order, one
`get`, and an unknown name is one error that lists the names there are.

An entry is the object itself or, where importing it would pull a heavy runtime in, a
`"module:attribute"` string imported on first `get` (so a registry's entries are never plain strings).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from hwnas.errors import HwnasError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named implementations of one kind (`kind` names it in errors, e.g. "export format")."""

    def __init__(
        self,
        kind: str,
        entries: dict[str, T | str] | None = None,
        *,
        error: type[HwnasError] = HwnasError,
        listing: str = "allowed",
        hint: str = "",
    ):
        self.kind, self.error, self.listing, self.hint = kind, error, listing, hint
        self._entries: dict[str, T | str] = dict(entries or {})

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@REGISTRY.register("name")` on a class or function adds it under `name`."""

        def add(value: T) -> T:
            self.add(name, value)
            return value

        return add

    def add(self, name: str, value: T | str) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = value

    def get(self, name: str) -> T:
        """The implementation registered as `name`; else one `error` listing the names."""
        if name not in self._entries:
            raise self.unknown(name)
        value = self._entries[name]
        if isinstance(value, str):
            module, _, attribute = value.partition(":")
            value = self._entries[name] = getattr(importlib.import_module(module), attribute)
        return value

    def unknown(self, name: str) -> HwnasError:
        """The error for a name that is not registered (raise it where a caller checks names itself)."""
        return self.error(f"unknown {self.kind} '{name}'; {self.listing}: {', '.join(self._entries)}{self.hint}")

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: Any) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
