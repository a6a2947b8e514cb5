"""flytekit's `ResourceMeta.encode` / `decode` for flat dataclass metas, without the detours.

A flytekit connector's meta is usually a dataclass of strings and numbers using flytekit's
own codec: `json.dumps(asdict(meta))` and `dataclass_from_dict(cls, json.loads(data))`.
`asdict` deep-copies every value and `dataclass_from_dict` looks each field's type up on
every call: about half of what encoding and decoding cost. Here, for a meta class that
does not override the codec, the same bytes and the same object come straight: a meta
whose values are all `str`, `int`, `float`, `bool` or None (what `asdict` copies as they
are) is written from its fields in order; bytes whose JSON object names only fields whose
type is not a dataclass (those `dataclass_from_dict` passes as they are) are the class's
keyword arguments, kept per bytes (bounded) when they are all plain values, as GetTask is
polled with the same bytes. Anything else goes through flytekit's own methods.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from flytekit.extend.backend.base_connector import ResourceMeta as KitResourceMeta

_ENCODE = KitResourceMeta.encode
_DECODE = KitResourceMeta.decode.__func__  # type: ignore[attr-defined]
_PLAIN = frozenset({str, int, float, bool, type(None)})
_FIELDS: dict[type, tuple[tuple[str, ...], frozenset[str]]] = {}
CACHE_ENTRIES = 4096
# GetTask is polled with the same bytes: a flat meta's keyword arguments, kept per bytes
_KWARGS: dict[tuple[type, bytes], dict[str, Any]] = {}


def _fields(cls: type) -> tuple[tuple[str, ...], frozenset[str]]:
    """A dataclass's field names in order, and those whose type is not a dataclass."""
    found = _FIELDS.get(cls)
    if found is None:
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        found = _FIELDS[cls] = (
            tuple(f.name for f in fields),
            frozenset(f.name for f in fields if not dataclasses.is_dataclass(f.type)))
    return found


def encode(meta: Any) -> bytes:
    """`meta.encode()`: the same bytes."""
    cls = type(meta)
    if cls.encode is _ENCODE and dataclasses.is_dataclass(cls):
        names = _fields(cls)[0]
        values = {name: getattr(meta, name) for name in names}
        if all(type(value) in _PLAIN for value in values.values()):
            return json.dumps(values).encode("utf-8")
    data: bytes = meta.encode()
    return data


def decode(cls: Any, data: bytes) -> Any:
    """`cls.decode(data)`: an equal object, or the same error."""
    if getattr(cls.decode, "__func__", None) is _DECODE and type(data) is bytes and \
            isinstance(cls, type) and dataclasses.is_dataclass(cls):
        key = (cls, data)
        kwargs = _KWARGS.get(key)
        if kwargs is not None:
            return cls(**kwargs)
        src = json.loads(data.decode("utf-8"))
        if type(src) is dict and _fields(cls)[1].issuperset(src):
            if all(type(value) in _PLAIN for value in src.values()):  # nothing to share
                if len(_KWARGS) >= CACHE_ENTRIES:
                    _KWARGS.clear()
                _KWARGS[key] = src.copy()
            return cls(**src)
    return cls.decode(data)
