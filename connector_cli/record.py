"""`Record`: a small immutable value class that costs nothing to define.

A frozen dataclass compiles its methods when its module is imported (about 0.4 ms a
class on Python 3.11), and the daemon's start-up path defines several: configs, plugin
origins, registry rows. A `Record` subclass lists its fields in `__slots__` and sets them
once in `__init__` with `_set`; equality, hashing and repr come from those fields (less
any in `_hidden`), and assigning an attribute afterwards raises, as it does on a frozen
dataclass; copies and pickles work as they do for one.
"""

from __future__ import annotations

from typing import Any, ClassVar


class Record:
    """Base for immutable value objects whose fields are their `__slots__`."""

    __slots__ = ()
    _hidden: ClassVar[frozenset[str]] = frozenset()

    def _set(self, **fields: Any) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to {name!r}: {type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete {name!r}: {type(self).__name__} is immutable")

    def _fields(self) -> tuple[str, ...]:
        return type(self).__slots__  # type: ignore[return-value]

    def _shown(self) -> tuple[tuple[str, Any], ...]:
        hidden = self._hidden
        return tuple((name, getattr(self, name)) for name in self._fields()
                     if name not in hidden)

    def as_dict(self) -> dict[str, Any]:
        """Every field by name."""
        return {name: getattr(self, name) for name in self._fields()}

    def __reduce__(self) -> tuple[Any, ...]:
        return _restore, (type(self), self.as_dict())

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._shown() == other._shown()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._shown())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self._shown())
        return f"{type(self).__name__}({fields})"


def _restore(cls: type[Record], fields: dict[str, Any]) -> Record:
    """A record from its fields without calling `__init__` (pickle and copy use this)."""
    record = cls.__new__(cls)
    record._set(**fields)
    return record
