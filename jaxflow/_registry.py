"""A read-only, documented name → entry mapping (the activation and initialiser registries)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Mapping, Generic[T]):
    """A read-only mapping from names to entries, with its own docstring.

    Looking up an unknown name raises ``KeyError`` listing the valid ones.
    """

    def __init__(self, what: str, entries: dict[str, T], doc: str):
        self._what = what
        self._entries = dict(entries)
        self.__doc__ = doc

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(
                f"{name!r} is not a known {self._what}; valid: {', '.join(self)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<{self._what} registry: {', '.join(self)}>"
