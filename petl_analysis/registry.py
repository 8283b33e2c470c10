"""timm-style registries: one per extensible axis (models, datasets, projections, methods, selectors).

Adding a projection, method, dataset or selector is adding one file that calls ``REGISTRY.register(name)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import expected_one_of

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of factories (classes or functions).

    >>> PROJECTIONS = Registry("projection")
    >>> @PROJECTIONS.register("dense")
    ... class DenseProjection: ...
    >>> PROJECTIONS.get("dense") is DenseProjection
    True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise expected_one_of(self.kind, name, list(self._entries)) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def registered(self) -> list[str]:
        """Names in the order they were registered (for listings that keep a chosen order, e.g. a legend)."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
