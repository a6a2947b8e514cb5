"""Infer a LiteralType from an example Python/JSON value (outputs with no declared type)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from flyteidl2.core.types_pb2 import (
    BlobType,
    EnumType,
    LiteralType,
    SimpleType,
    StructuredDatasetType,
)

from connector_cli.literals._encode import as_record
from connector_cli.literals._types import type_name
from connector_cli.literals._values import (
    FlyteDirectory,
    FlyteFile,
    Mismatch,
    StructuredDataset,
    got,
    key_segment,
)

_SIMPLE = {
    bool: SimpleType.BOOLEAN,
    int: SimpleType.INTEGER,
    float: SimpleType.FLOAT,
    str: SimpleType.STRING,
    bytes: SimpleType.BINARY,
    type(None): SimpleType.NONE,
}


def infer(value: Any) -> LiteralType:
    """The LiteralType Flyte would declare for `value` (bool before int, uniform lists, ...)."""
    simple = _SIMPLE.get(type(value))
    if simple is not None:
        return LiteralType(simple=simple)
    if isinstance(value, enum.Enum):
        return LiteralType(enum_type=EnumType(values=[str(m.value) for m in type(value)]))
    if isinstance(value, bool):
        return LiteralType(simple=SimpleType.BOOLEAN)
    if isinstance(value, datetime):
        return LiteralType(simple=SimpleType.DATETIME)
    if isinstance(value, timedelta):
        return LiteralType(simple=SimpleType.DURATION)
    if isinstance(value, (int, float, str)):
        return infer(_base(value))
    if isinstance(value, (FlyteFile, FlyteDirectory)):
        single = isinstance(value, FlyteFile)
        dim = BlobType.SINGLE if single else BlobType.MULTIPART
        return LiteralType(blob=BlobType(format=value.format, dimensionality=dim))
    if isinstance(value, StructuredDataset):
        return LiteralType(structured_dataset_type=StructuredDatasetType(format=value.format))
    if isinstance(value, (list, tuple)):
        return LiteralType(collection_type=_uniform(list(enumerate(value)), "list", "[{}]"))
    if isinstance(value, Mapping):
        return _infer_mapping(value)
    record = as_record(value)
    if record is not None:
        return _struct_type(type(value).__name__, record)
    raise Mismatch(f"cannot infer a Flyte type for {got(value)}; declare it in the interface")


def _base(value: Any) -> Any:
    for base in (int, float, str):
        if isinstance(value, base):
            return base(value)
    return value


def _uniform(items: list[tuple[Any, Any]], what: str, segment: str) -> LiteralType:
    """The one element type shared by all items (an empty container holds `none`)."""
    found: LiteralType | None = None
    for key, item in items:
        try:
            current = infer(item)
        except Mismatch as exc:
            raise exc.at(segment.format(key) if segment != "key" else key_segment(key)) from None
        if found is None:
            found = current
        elif current != found:
            raise Mismatch(
                f"{what} elements have different types ({type_name(found)}, "
                f"{type_name(current)}); declare the type in the interface"
            )
    return found if found is not None else LiteralType(simple=SimpleType.NONE)


def _infer_mapping(value: Mapping) -> LiteralType:
    """str-keyed dicts with one value type are maps; records and the rest are structs."""
    if value and all(isinstance(k, str) for k in value):
        try:
            return LiteralType(map_value_type=_uniform(list(value.items()), "map", "key"))
        except Mismatch:
            pass
    return LiteralType(simple=SimpleType.STRUCT)


def _json_type(item: Any) -> str:
    if isinstance(item, bool):
        return "boolean"
    if isinstance(item, int):
        return "integer"
    if isinstance(item, (float, timedelta)):
        return "number"
    if isinstance(item, (str, datetime)):
        return "string"
    if isinstance(item, (list, tuple)):
        return "array"
    return "null" if item is None else "object"


def _struct_type(title: str, record: Mapping[str, Any]) -> LiteralType:
    """STRUCT with a small JSON schema (field names and JSON types) as Flyte 2 attaches."""
    properties = {str(name): {"type": _json_type(item)} for name, item in record.items()}
    lt = LiteralType(simple=SimpleType.STRUCT)
    lt.metadata.update({"title": title, "type": "object", "properties": properties,
                        "required": list(properties)})
    return lt
