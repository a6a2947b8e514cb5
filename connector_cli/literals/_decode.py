"""Literal -> Python: one reader compiled per LiteralType, plus an untyped reader."""

from __future__ import annotations

import weakref
from datetime import timedelta
from operator import attrgetter, methodcaller
from typing import Any, Callable

from flyteidl2.core.literals_pb2 import Literal
from flyteidl2.core.types_pb2 import BlobType, LiteralType, SimpleType
from google.protobuf.struct_pb2 import ListValue, Struct, Value

from connector_cli.literals._cache import CompiledCache
from connector_cli.literals._types import literal_kind, type_name
from connector_cli.literals._values import (
    EPOCH,
    FlyteDirectory,
    FlyteFile,
    Mismatch,
    StructuredDataset,
    key_segment,
)

Reader = Callable[[Literal], Any]
_PRIMITIVE = attrgetter("scalar.primitive")
_WHICH = methodcaller("WhichOneof", "value")


def unpack_msgpack(data: bytes) -> Any:
    import msgpack  # only for msgpack-tagged binaries: kept off the start-up path

    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise Mismatch(f"invalid msgpack bytes ({exc})") from None


def struct_to_python(value: Value | Struct | ListValue) -> Any:
    """google.protobuf Struct/Value/ListValue -> dict/list/scalars (numbers stay floats)."""
    if isinstance(value, Struct):
        return {k: struct_to_python(v) for k, v in value.fields.items()}
    if isinstance(value, ListValue):
        return [struct_to_python(v) for v in value.values]
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return struct_to_python(value.struct_value)
    if kind == "list_value":
        return struct_to_python(value.list_value)
    if kind == "null_value" or kind is None:
        return None
    return getattr(value, kind)


def _not_supported(what: str) -> Reader:
    def read(lit: Literal) -> Any:
        raise Mismatch(f"{what} literals are not supported")
    return read


def _fallback(lit: Literal, lt: LiteralType, read: Reader) -> Any:
    """The slow path: offloaded, msgpack-encoded or union-wrapped values, else an error."""
    which = lit.WhichOneof("value")
    if which == "offloaded_metadata":
        meta = lit.offloaded_metadata
        raise Mismatch(
            f"the value is offloaded to {meta.uri} ({meta.size_bytes} bytes); offloaded "
            "literals are not supported, pass the value inline"
        )
    if which == "scalar":
        scalar = lit.scalar.WhichOneof("value")
        if scalar == "union":
            return read(lit.scalar.union.value)
        if scalar == "binary" and lit.scalar.binary.tag == "msgpack":
            from connector_cli.literals._encode import WRITERS

            inner = Literal()
            WRITERS.get(lt)(unpack_msgpack(lit.scalar.binary.value), inner)
            return read(inner)
    raise Mismatch(f"expected {type_name(lt)}, got {literal_kind(lit)}")


def _primitive(lt: LiteralType, field: str, convert: Callable[[Any], Any] | None) -> Reader:
    if convert is None:  # int, str, bool: a true value can only come from the set field
        def read(lit: Literal) -> Any:
            prim = lit.scalar.primitive
            value = getattr(prim, field)
            if value or prim.WhichOneof("value") == field:
                return value
            return _fallback(lit, lt, read)
    else:  # datetime, duration: messages, which read as empty when another field is set
        def read(lit: Literal) -> Any:
            prim = lit.scalar.primitive
            if prim.WhichOneof("value") == field:
                return convert(getattr(prim, field))
            return _fallback(lit, lt, read)
    _PRIMITIVE_READERS[read] = (field, attrgetter(field), convert)
    return read


# A primitive reader -> (its Primitive field, a getter of it, the conversion or None), for
# `_bulk`; weak, so readers dropped from the compiled-reader cache are not kept alive.
_PRIMITIVE_READERS: weakref.WeakKeyDictionary[
    Reader, tuple[str, Callable[[Any], Any], Callable[[Any], Any] | None]
] = weakref.WeakKeyDictionary()


def _bulk(inner: Reader) -> Callable[[Any], list[Any] | None]:
    """For primitive element types: all values in C-level passes, or None to go item by item."""
    spec = _PRIMITIVE_READERS.get(inner)
    if spec is None:
        return lambda items: None
    field, get, convert = spec
    expected = {field}

    def bulk(items: Any) -> list[Any] | None:
        prims = list(map(_PRIMITIVE, items))
        if set(map(_WHICH, prims)) != expected:
            return None
        values = list(map(get, prims))
        return values if convert is None else list(map(convert, values))
    return bulk


def _float(lt: LiteralType) -> Reader:
    def read(lit: Literal) -> Any:
        prim = lit.scalar.primitive
        which = prim.WhichOneof("value")
        if which == "float_value":
            return prim.float_value
        if which == "integer":
            return float(prim.integer)
        return _fallback(lit, lt, read)
    return read


def _scalar(lt: LiteralType, field: str, convert: Callable[[Any], Any]) -> Reader:
    def read(lit: Literal) -> Any:
        scalar = lit.scalar
        if scalar.WhichOneof("value") == field:
            return convert(getattr(scalar, field))
        return _fallback(lit, lt, read)
    return read


def _to_datetime(ts: Any) -> Any:
    return EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def _to_timedelta(d: Any) -> timedelta:
    return timedelta(seconds=d.seconds, microseconds=d.nanos // 1000)


def _binary(binary: Any) -> Any:
    return unpack_msgpack(binary.value) if binary.tag == "msgpack" else binary.value


def _struct(lt: LiteralType) -> Reader:
    def read(lit: Literal) -> Any:
        scalar = lit.scalar
        which = scalar.WhichOneof("value")
        if which == "binary" and scalar.binary.tag == "msgpack":
            return unpack_msgpack(scalar.binary.value)
        if which == "generic":
            return struct_to_python(scalar.generic)
        if which == "union":
            return read(scalar.union.value)
        return _fallback(lit, lt, read)
    return read


def _simple(lt: LiteralType) -> Reader:
    simple = lt.simple
    if simple == SimpleType.INTEGER:
        return _primitive(lt, "integer", None)
    if simple == SimpleType.FLOAT:
        return _float(lt)
    if simple == SimpleType.STRING:
        return _primitive(lt, "string_value", None)
    if simple == SimpleType.BOOLEAN:
        return _primitive(lt, "boolean", None)
    if simple == SimpleType.DATETIME:
        return _primitive(lt, "datetime", _to_datetime)
    if simple == SimpleType.DURATION:
        return _primitive(lt, "duration", _to_timedelta)
    if simple == SimpleType.NONE:
        return _scalar(lt, "none_type", lambda _: None)
    if simple == SimpleType.BINARY:
        return _scalar(lt, "binary", _binary)
    if simple == SimpleType.STRUCT:
        return _struct(lt)
    return _not_supported(type_name(lt))


def _collection(lt: LiteralType) -> Reader:
    inner = READERS.get(lt.collection_type)
    bulk = _bulk(inner)

    def read(lit: Literal) -> Any:
        if lit.WhichOneof("value") != "collection":
            return _fallback(lit, lt, read)
        items = lit.collection.literals
        values = bulk(items)
        if values is not None:
            return values
        try:
            return [inner(item) for item in items]
        except Mismatch:
            for index, item in enumerate(items):
                try:
                    inner(item)
                except Mismatch as exc:
                    raise exc.at(f"[{index}]") from None
            raise
    return read


def _map(lt: LiteralType) -> Reader:
    inner = READERS.get(lt.map_value_type)
    bulk = _bulk(inner)

    def read(lit: Literal) -> Any:
        if lit.WhichOneof("value") != "map":
            return _fallback(lit, lt, read)
        literals = lit.map.literals
        values = bulk(literals.values())
        if values is not None:
            return dict(zip(literals.keys(), values))
        out = {}
        for key, item in literals.items():
            try:
                out[key] = inner(item)
            except Mismatch as exc:
                raise exc.at(key_segment(key)) from None
        return out
    return read


def _blob(lt: LiteralType) -> Reader:
    cls = FlyteFile if lt.blob.dimensionality == BlobType.SINGLE else FlyteDirectory
    declared = lt.blob.format

    def convert(blob: Any) -> Any:
        return cls(blob.uri, blob.metadata.type.format or declared)
    return _scalar(lt, "blob", convert)


def _dataset(lt: LiteralType) -> Reader:
    declared = lt.structured_dataset_type.format

    def convert(sd: Any) -> Any:
        return StructuredDataset(sd.uri, sd.metadata.structured_dataset_type.format or declared)
    return _scalar(lt, "structured_dataset", convert)


def _enum(lt: LiteralType) -> Reader:
    values = frozenset(lt.enum_type.values)
    shown = ", ".join(repr(v) for v in lt.enum_type.values)

    def read(lit: Literal) -> Any:
        prim = lit.scalar.primitive
        if prim.WhichOneof("value") != "string_value":
            return _fallback(lit, lt, read)
        if prim.string_value not in values:
            raise Mismatch(f"expected one of {shown}, got {prim.string_value!r}")
        return prim.string_value
    return read


def _union(lt: LiteralType) -> Reader:
    variants = list(lt.union_type.variants)
    readers = [READERS.get(v) for v in variants]
    by_key = {v.SerializeToString(deterministic=True): r for v, r in zip(variants, readers)}
    by_tag = {v.structure.tag: r for v, r in zip(variants, readers) if v.structure.tag}

    def read(lit: Literal) -> Any:
        scalar = lit.scalar
        if scalar.WhichOneof("value") == "union":
            union = scalar.union
            chosen = by_key.get(union.type.SerializeToString(deterministic=True))
            if chosen is None and union.type.structure.tag:
                chosen = by_tag.get(union.type.structure.tag)
            if chosen is not None:
                return chosen(union.value)
            lit = union.value
        for candidate in readers:
            try:
                return candidate(lit)
            except Mismatch:
                continue
        raise Mismatch(f"expected {type_name(lt)}, got {literal_kind(lit)}")
    return read


def compile_reader(lt: LiteralType) -> Reader:
    """Build the reader for one LiteralType (nested types come from the cache)."""
    kind = lt.WhichOneof("type")
    if kind == "simple":
        return _simple(lt)
    if kind == "collection_type":
        return _collection(lt)
    if kind == "map_value_type":
        return _map(lt)
    if kind == "blob":
        return _blob(lt)
    if kind == "enum_type":
        return _enum(lt)
    if kind == "structured_dataset_type":
        return _dataset(lt)
    if kind == "union_type":
        return _union(lt)
    if kind == "schema":
        return _not_supported("schema")
    return read_untyped


READERS: CompiledCache[Reader] = CompiledCache(compile_reader)


def read_untyped(lit: Literal) -> Any:
    """Convert a literal without a declared type, by what it holds."""
    which = lit.WhichOneof("value")
    if which == "collection":
        out = []
        for index, item in enumerate(lit.collection.literals):
            try:
                out.append(read_untyped(item))
            except Mismatch as exc:
                raise exc.at(f"[{index}]") from None
        return out
    if which == "map":
        result = {}
        for key, item in lit.map.literals.items():
            try:
                result[key] = read_untyped(item)
            except Mismatch as exc:
                raise exc.at(key_segment(key)) from None
        return result
    if which != "scalar":
        return _fallback(lit, LiteralType(), read_untyped)
    return _read_untyped_scalar(lit)


def _read_untyped_scalar(lit: Literal) -> Any:
    scalar = lit.scalar
    which = scalar.WhichOneof("value")
    if which == "primitive":
        prim = scalar.primitive
        field = prim.WhichOneof("value")
        if field == "datetime":
            return _to_datetime(prim.datetime)
        if field == "duration":
            return _to_timedelta(prim.duration)
        if field is None:
            raise Mismatch("the primitive literal holds no value")
        return getattr(prim, field)
    if which == "none_type":
        return None
    if which == "binary":
        return _binary(scalar.binary)
    if which == "generic":
        return struct_to_python(scalar.generic)
    if which == "blob":
        blob = scalar.blob
        single = blob.metadata.type.dimensionality == BlobType.SINGLE
        return (FlyteFile if single else FlyteDirectory)(blob.uri, blob.metadata.type.format)
    if which == "structured_dataset":
        sd = scalar.structured_dataset
        return StructuredDataset(sd.uri, sd.metadata.structured_dataset_type.format)
    if which == "union":
        union = scalar.union
        if union.type.WhichOneof("type"):
            return READERS.get(union.type)(union.value)
        return read_untyped(union.value)
    raise Mismatch(f"{literal_kind(lit)} is not supported")
