"""The LiteralType for a Python type annotation (`int`, `list[str]`, `Optional[FlyteFile]`).

Used to build task interfaces from plain Python (`connector_cli.testing.make_template`,
`flyte-connector template`); a value instead of a type is inferred like an output.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from datetime import datetime, timedelta
from typing import Any

from flyteidl2.core.types_pb2 import (
    BlobType,
    EnumType,
    LiteralType,
    SimpleType,
    StructuredDatasetType,
    TypeStructure,
    UnionType,
)

from connector_cli.errors import LiteralError
from connector_cli.literals._values import FlyteDirectory, FlyteFile, StructuredDataset

_SIMPLE = {
    bool: SimpleType.BOOLEAN, int: SimpleType.INTEGER, float: SimpleType.FLOAT,
    str: SimpleType.STRING, bytes: SimpleType.BINARY, datetime: SimpleType.DATETIME,
    timedelta: SimpleType.DURATION, dict: SimpleType.STRUCT, type(None): SimpleType.NONE,
    None: SimpleType.NONE,
}


def literal_type_of(spec: Any, infer: Any) -> LiteralType:
    """The `LiteralType` for a type annotation, a ready `LiteralType`, or (via `infer`) an
    example value."""
    if isinstance(spec, LiteralType):
        return spec
    if _hashable(spec) and spec in _SIMPLE:
        return LiteralType(simple=_SIMPLE[spec])
    if spec is FlyteFile or spec is FlyteDirectory:
        dim = BlobType.SINGLE if spec is FlyteFile else BlobType.MULTIPART
        return LiteralType(blob=BlobType(dimensionality=dim))
    if spec is StructuredDataset:
        return LiteralType(structured_dataset_type=StructuredDatasetType())
    if isinstance(spec, type) and issubclass(spec, enum.Enum):
        return LiteralType(enum_type=EnumType(values=[str(m.value) for m in spec]))
    if isinstance(spec, type) and dataclasses.is_dataclass(spec):
        return LiteralType(simple=SimpleType.STRUCT)
    origin, args = typing.get_origin(spec), typing.get_args(spec)
    if origin is not None:
        return _generic_type(spec, origin, args, infer)
    return infer(spec)  # type: ignore[no-any-return]


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _generic_type(spec: Any, origin: Any, args: tuple[Any, ...], infer: Any) -> LiteralType:
    """`list[T]`, `dict[str, T]`, `Optional[T]` and `Union[...]` / `T | None`."""
    if origin in (list, tuple) and args and (origin is list or args[-1] is Ellipsis
                                             or len(set(args)) == 1):
        return LiteralType(collection_type=literal_type_of(args[0], infer))
    if origin is dict and len(args) == 2 and args[0] is str:
        return LiteralType(map_value_type=literal_type_of(args[1], infer))
    if origin is typing.Union or origin is getattr(types, "UnionType", None):
        variants = []
        for arg in args:
            variant = LiteralType()
            variant.CopyFrom(literal_type_of(arg, infer))
            tag = "none" if arg is type(None) else getattr(arg, "__name__", str(arg))
            variant.structure.CopyFrom(TypeStructure(tag=tag))
            variants.append(variant)
        return LiteralType(union_type=UnionType(variants=variants))
    raise LiteralError(f"cannot map the type {spec!r} to a Flyte type; pass a LiteralType")
