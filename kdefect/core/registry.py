"""A tiny name -> object registry shared by every pluggable family.

Backbones, losses, data sources and export formats all look things up by the
name a user writes in a config, so one class gives them the same behaviour: a
decorator to register, metadata travelling with each entry, and a
:class:`~kdefect.errors.ConfigError` with the closest valid name on a typo.
TF-free, in the core, so that any layer (and ``config``, for its choices) can hold or read a registry.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from kdefect.errors import ConfigError

T = TypeVar("T")


def loose_name(name: str) -> str:
    """``name`` without case or separators: 'Pitted-Surface' and 'pitted_surface' are one class to a person."""
    return "".join(ch for ch in str(name).casefold() if ch.isalnum())


def closest_name(name: str, names: Iterable[str], cutoff: float = 0.5) -> str | None:
    """The name in ``names`` that ``name`` was meant to be: equal up to case and separators, else the closest
    spelling (difflib ratio >= ``cutoff``); None when none is close."""
    names = list(names)
    same = [n for n in names if loose_name(n) == loose_name(name)]
    close = same or difflib.get_close_matches(str(name), names, n=1, cutoff=cutoff)
    return close[0] if close else None


def closest_hint(name: str, names: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the valid name closest to a mistyped ``name``, or ``""`` when none is close."""
    close = closest_name(name, names)
    return f" Did you mean '{close}'?" if close else ""


class Registry:
    """Map names to objects (builders, classes) plus free-form metadata."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Any] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator: ``@REG.register("name", key=value)`` stores the object and its metadata."""
        key = name.lower()

        def deco(obj: T) -> T:
            if key in self._items and self._items[key] is not obj:
                raise ValueError(f"{self.kind} '{key}' is registered twice")
            self._items[key] = obj
            self._meta[key] = dict(meta)
            return obj

        return deco

    def add(self, name: str, obj: Any, **meta: Any) -> Any:
        """Register without decorator syntax."""
        return self.register(name, **meta)(obj)

    def _key(self, name: str) -> str:
        key = str(name).lower()
        if key not in self._items:
            raise ConfigError(
                f"unknown {self.kind} '{name}'.{closest_hint(key, self._items)} Available: {', '.join(self.names())}."
            )
        return key

    def get(self, name: str) -> Any:
        """The object registered under ``name`` (case-insensitive); ConfigError with a suggestion otherwise."""
        return self._items[self._key(name)]

    def meta(self, name: str) -> dict[str, Any]:
        """A copy of the metadata registered with ``name``."""
        return dict(self._meta[self._key(name)])

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
