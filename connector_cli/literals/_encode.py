"""Python/JSON -> Literal: one writer compiled per LiteralType, filling a Literal in place."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any, Callable

from flyteidl2.core.literals_pb2 import Literal
from flyteidl2.core.types_pb2 import BlobType, LiteralType, SimpleType

from connector_cli.literals._cache import CompiledCache
from connector_cli.literals._types import type_name
from connector_cli.literals._values import (
    EPOCH,
    FlyteDirectory,
    FlyteFile,
    Mismatch,
    StructuredDataset,
    format_datetime,
    got,
    key_segment,
    parse_datetime,
    parse_duration,
)

Writer = Callable[[Any, Literal], None]
_MICROS = 1_000_000


def _plain(obj: Any) -> Any:
    """msgpack `default`: values msgpack cannot pack natively, as Flyte 2 packs them."""
    if isinstance(obj, datetime):
        return format_datetime(obj)
    if isinstance(obj, date):
        return obj.isoformat()
    if isinstance(obj, timedelta):
        return obj.total_seconds()
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    record = as_record(obj)
    if record is not None:
        return record
    raise TypeError(f"cannot encode {got(obj)} as msgpack")


def as_record(obj: Any) -> dict[str, Any] | None:
    """A dataclass instance or pydantic model as a dict; None for anything else."""
    if isinstance(obj, (FlyteFile, FlyteDirectory, StructuredDataset)):
        return None
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    dump = getattr(obj, "model_dump", None)
    if callable(dump) and not isinstance(obj, type):
        return dump(mode="json")
    return None


def pack_msgpack(value: Any) -> bytes:
    import msgpack  # only for dataclass and dict values: kept off the start-up path

    try:
        return msgpack.packb(value, default=_plain, use_bin_type=True, datetime=False)
    except (TypeError, ValueError, OverflowError) as exc:
        raise Mismatch(str(exc)) from None


def _int(lt: LiteralType) -> Writer:
    def write(value: Any, lit: Literal) -> None:
        if type(value) is not int:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            elif not isinstance(value, int) or isinstance(value, bool):
                raise Mismatch(f"expected an integer, got {got(value)}")
        try:
            lit.scalar.primitive.integer = value
        except ValueError:
            raise Mismatch(f"integer {value} is outside the 64-bit range") from None
    write.primitive = ("integer", {int})  # type: ignore[attr-defined]
    return write


def _float(lt: LiteralType) -> Writer:
    def write(value: Any, lit: Literal) -> None:
        if type(value) is not float:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise Mismatch(f"expected a float, got {got(value)}")
            value = float(value)
        lit.scalar.primitive.float_value = value
    write.primitive = ("float_value", {float})  # type: ignore[attr-defined]
    return write


def _str(lt: LiteralType) -> Writer:
    def write(value: Any, lit: Literal) -> None:
        if not isinstance(value, str):
            raise Mismatch(f"expected a string, got {got(value)}")
        lit.scalar.primitive.string_value = value
    write.primitive = ("string_value", {str})  # type: ignore[attr-defined]
    return write


def _bool(lt: LiteralType) -> Writer:
    def write(value: Any, lit: Literal) -> None:
        if not isinstance(value, bool):
            raise Mismatch(f"expected a boolean (true/false), got {got(value)}")
        lit.scalar.primitive.boolean = value
    write.primitive = ("boolean", {bool})  # type: ignore[attr-defined]
    return write


def _datetime(value: Any, lit: Literal) -> None:
    delta = parse_datetime(value) - EPOCH
    ts = lit.scalar.primitive.datetime
    ts.seconds = delta.days * 86400 + delta.seconds
    ts.nanos = delta.microseconds * 1000


def _duration(value: Any, lit: Literal) -> None:
    delta = parse_duration(value)
    micros = (delta.days * 86400 + delta.seconds) * _MICROS + delta.microseconds
    seconds, rest = divmod(abs(micros), _MICROS)
    sign = -1 if micros < 0 else 1
    out = lit.scalar.primitive.duration
    out.seconds = sign * seconds
    out.nanos = sign * rest * 1000


def _none(value: Any, lit: Literal) -> None:
    if value is not None:
        raise Mismatch(f"expected none (null), got {got(value)}")
    lit.scalar.none_type.SetInParent()


def _binary(value: Any, lit: Literal) -> None:
    binary = lit.scalar.binary
    if isinstance(value, (bytes, bytearray)):
        binary.value = bytes(value)
        binary.tag = ""
    else:
        binary.value = pack_msgpack(value)
        binary.tag = "msgpack"


def _struct(lt: LiteralType) -> Writer:
    required = _required_fields(lt)

    def write(value: Any, lit: Literal) -> None:
        if not isinstance(value, Mapping):
            record = as_record(value)
            if record is None:
                raise Mismatch(f"expected an object (struct), got {got(value)}")
            value = record
        for name in required:
            if name not in value:
                raise Mismatch(f"missing field {name!r}")
        binary = lit.scalar.binary
        binary.value = pack_msgpack(value if type(value) is dict else dict(value))
        binary.tag = "msgpack"
    return write


def _required_fields(lt: LiteralType) -> tuple[str, ...]:
    """Required top-level fields from the struct's JSON schema metadata, if it has one."""
    schema = lt.metadata.fields
    if "required" not in schema:
        return ()
    return tuple(v.string_value for v in schema["required"].list_value.values if v.string_value)


def _simple(lt: LiteralType) -> Writer:
    simple = lt.simple
    table: dict[int, Callable[[LiteralType], Writer]] = {
        SimpleType.INTEGER: _int, SimpleType.FLOAT: _float, SimpleType.STRING: _str,
        SimpleType.BOOLEAN: _bool, SimpleType.STRUCT: _struct,
    }
    if simple in table:
        return table[simple](lt)
    fixed = {SimpleType.DATETIME: _datetime, SimpleType.DURATION: _duration,
             SimpleType.NONE: _none, SimpleType.BINARY: _binary}.get(simple)
    if fixed is not None:
        return fixed
    return _unsupported(type_name(lt))


def _unsupported(what: str) -> Writer:
    def write(value: Any, lit: Literal) -> None:
        raise Mismatch(f"{what} values are not supported")
    return write


def _fast(inner: Writer) -> Callable[[Sequence[Any], Any], bool]:
    """For primitive element types: fill a whole list at once when every item has the exact type."""
    spec = getattr(inner, "primitive", None)
    if spec is None:
        return lambda items, add: False
    field, exact = spec

    def fill(items: Sequence[Any], add: Any) -> bool:
        if not set(map(type, items)) <= exact:
            return False
        for item in items:
            setattr(add().scalar.primitive, field, item)
        return True
    return fill


def _collection(lt: LiteralType) -> Writer:
    inner = WRITERS.get(lt.collection_type)
    fast = _fast(inner)

    def write(value: Any, lit: Literal) -> None:
        if not isinstance(value, (list, tuple)):
            raise Mismatch(f"expected a list of {type_name(lt.collection_type)}, got {got(value)}")
        add = lit.collection.literals.add
        lit.collection.SetInParent()
        try:
            if fast(value, add):
                return
        except ValueError:
            del lit.collection.literals[:]
        for index, item in enumerate(value):
            try:
                inner(item, add())
            except Mismatch as exc:
                raise exc.at(f"[{index}]") from None
    return write


def _map(lt: LiteralType) -> Writer:
    inner = WRITERS.get(lt.map_value_type)

    def write(value: Any, lit: Literal) -> None:
        if not isinstance(value, Mapping):
            raise Mismatch(f"expected an object (map of {type_name(lt.map_value_type)}), "
                           f"got {got(value)}")
        out = lit.map.literals
        lit.map.SetInParent()
        for key, item in value.items():
            if not isinstance(key, str):
                raise Mismatch(f"map keys must be strings, got {got(key)}")
            try:
                inner(item, out[key])
            except Mismatch as exc:
                raise exc.at(key_segment(key)) from None
    return write


def _location(value: Any, expected: str, cls: type) -> tuple[str, str]:
    """(uri, format) from a value object, a URI string or {"uri": ..., "format": ...}."""
    if isinstance(value, cls):
        located: Any = value
        return located.uri, located.format
    if isinstance(value, str) and value:
        return value, ""
    if isinstance(value, Mapping) and isinstance(value.get("uri"), str) and value["uri"]:
        extra = set(value) - {"uri", "format"}
        if not extra and isinstance(value.get("format", ""), str):
            return value["uri"], value.get("format", "")
    raise Mismatch(
        f'expected {expected} (a URI or {{"uri": ..., "format": ...}}), got {got(value)}'
    )


def _blob(lt: LiteralType) -> Writer:
    single = lt.blob.dimensionality == BlobType.SINGLE
    cls, expected = (FlyteFile, "a file") if single else (FlyteDirectory, "a directory")
    declared, dimensionality = lt.blob.format, lt.blob.dimensionality

    def write(value: Any, lit: Literal) -> None:
        uri, fmt = _location(value, expected, cls)
        blob = lit.scalar.blob
        blob.uri = uri
        blob.metadata.type.format = fmt or declared
        blob.metadata.type.dimensionality = dimensionality
    return write


def _dataset(lt: LiteralType) -> Writer:
    declared = lt.structured_dataset_type

    def write(value: Any, lit: Literal) -> None:
        uri, fmt = _location(value, "a structured dataset", StructuredDataset)
        sd = lit.scalar.structured_dataset
        sd.uri = uri
        sd.metadata.structured_dataset_type.CopyFrom(declared)
        if fmt:
            sd.metadata.structured_dataset_type.format = fmt
    return write


def _enum(lt: LiteralType) -> Writer:
    values = frozenset(lt.enum_type.values)
    shown = ", ".join(repr(v) for v in lt.enum_type.values)

    def write(value: Any, lit: Literal) -> None:
        if isinstance(value, enum.Enum):
            value = value.value
        if not isinstance(value, str) or value not in values:
            raise Mismatch(f"expected one of {shown}, got {got(value)}")
        lit.scalar.primitive.string_value = value
    return write


_EXACT_SIMPLE: dict[int, Callable[[Any], bool]] = {
    SimpleType.INTEGER: lambda v: type(v) is int,
    SimpleType.FLOAT: lambda v: type(v) is float,
    SimpleType.STRING: lambda v: type(v) is str,
    SimpleType.BOOLEAN: lambda v: type(v) is bool,
    SimpleType.NONE: lambda v: v is None,
    SimpleType.DATETIME: lambda v: isinstance(v, datetime),
    SimpleType.DURATION: lambda v: isinstance(v, timedelta),
    SimpleType.STRUCT: lambda v: isinstance(v, Mapping) or as_record(v) is not None,
}


def _exact(lt: LiteralType) -> Callable[[Any], bool]:
    """Whether a value already has the Python type this variant reads back as."""
    kind = lt.WhichOneof("type")
    if kind == "simple":
        return _EXACT_SIMPLE.get(lt.simple, lambda v: False)
    if kind == "blob":
        cls = FlyteFile if lt.blob.dimensionality == BlobType.SINGLE else FlyteDirectory
        return lambda v: isinstance(v, cls)
    if kind == "structured_dataset_type":
        return lambda v: isinstance(v, StructuredDataset)
    if kind == "collection_type":
        return lambda v: isinstance(v, (list, tuple))
    if kind == "map_value_type":
        return lambda v: isinstance(v, Mapping)
    return lambda v: False


def _union(lt: LiteralType) -> Writer:
    variants = [(v, WRITERS.get(v), _exact(v)) for v in lt.union_type.variants]

    def attempt(value: Any, lit: Literal, variant: LiteralType, write: Writer) -> bool:
        try:
            write(value, lit.scalar.union.value)
        except Mismatch:
            lit.Clear()
            return False
        lit.scalar.union.type.CopyFrom(variant)
        return True

    def write(value: Any, lit: Literal) -> None:
        for variant, writer, exact in variants:
            if exact(value) and attempt(value, lit, variant, writer):
                return
        for variant, writer, _ in variants:
            if attempt(value, lit, variant, writer):
                return
        raise Mismatch(f"expected {type_name(lt)}, got {got(value)}")
    return write


def compile_writer(lt: LiteralType) -> Writer:
    """Build the writer for one LiteralType (nested types come from the cache)."""
    kind = lt.WhichOneof("type")
    builders: dict[str, Callable[[LiteralType], Writer]] = {
        "simple": _simple, "collection_type": _collection, "map_value_type": _map,
        "blob": _blob, "enum_type": _enum, "structured_dataset_type": _dataset,
        "union_type": _union,
    }
    if kind in builders:
        return builders[kind](lt)
    if kind == "schema":
        return _unsupported("schema")
    return write_inferred


WRITERS: CompiledCache[Writer] = CompiledCache(compile_writer)


_EXACT: dict[type, Writer] = {}


def write_inferred(value: Any, lit: Literal) -> None:
    """Write a value with no declared type, using the type inferred from the value.

    Plain scalars (exactly int, float, str, bool, bytes, None) skip inference: their
    writer is looked up by Python type (GetTask outputs are mostly these)."""
    write = _EXACT.get(type(value))
    if write is None:
        from connector_cli.literals._infer import infer

        lt = infer(value)
        write = WRITERS.get(lt)
        if type(value) in _SIMPLE_TYPES:
            _EXACT[type(value)] = write
    write(value, lit)


_SIMPLE_TYPES = frozenset({int, float, str, bool, bytes, type(None)})
