"""Converters compiled once per message (LiteralType, VariableMap) and kept in a bounded cache."""

from __future__ import annotations

import threading
from typing import Any, Callable, Generic, Optional, TypeVar

T = TypeVar("T")


class CompiledCache(Generic[T]):
    """Maps a message, by its deterministic serialization, to what `build` made of it.

    A hit is one dict lookup; a miss builds from a private copy (a caller mutating its
    message later changes nothing) under a lock, evicting the oldest entry when full.
    With `memo`, the message last looked up is kept too: one comparison answers a repeat
    (a task type's requests carry the same interface) without serializing.
    """

    def __init__(self, build: Callable[[Any], T], size: int = 1024, memo: bool = False) -> None:
        self._build = build
        self._size = size
        self._items: dict[bytes, tuple[Any, T]] = {}
        self._lock = threading.Lock()
        self._memo = memo
        self._last: Optional[tuple[Any, T]] = None

    def get(self, message: Any) -> T:
        """The converter for `message`."""
        last = self._last
        if last is not None and last[0] == message:
            return last[1]
        key = message.SerializeToString(deterministic=True)
        entry = self._items.get(key)
        if entry is None:
            copy = type(message).FromString(key)
            entry = (copy, self._build(copy))
            with self._lock:
                self._items[key] = entry
                while len(self._items) > self._size:
                    del self._items[next(iter(self._items))]
        if self._memo:
            self._last = entry
        return entry[1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._last = None

    def __len__(self) -> int:
        return len(self._items)
