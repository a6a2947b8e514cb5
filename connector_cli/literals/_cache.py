"""Converters compiled once per message (LiteralType, VariableMap) and kept in a bounded cache."""

from __future__ import annotations

import threading
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class CompiledCache(Generic[T]):
    """Maps a message, by its deterministic serialization, to what `build` made of it.

    A hit is one dict lookup; a miss builds from a private copy (a caller mutating its
    message later changes nothing) under a lock, evicting the oldest entry when full.
    """

    def __init__(self, build: Callable[[Any], T], size: int = 1024) -> None:
        self._build = build
        self._size = size
        self._items: dict[bytes, T] = {}
        self._lock = threading.Lock()

    def get(self, message: Any) -> T:
        """The converter for `message`."""
        key = message.SerializeToString(deterministic=True)
        found = self._items.get(key)
        if found is None:
            found = self._build(type(message).FromString(key))
            with self._lock:
                self._items[key] = found
                while len(self._items) > self._size:
                    del self._items[next(iter(self._items))]
        return found

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
