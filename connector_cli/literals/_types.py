"""Readable names for LiteralTypes and Literals, used in error messages."""

from __future__ import annotations

from flyteidl2.core.literals_pb2 import Literal
from flyteidl2.core.types_pb2 import BlobType, LiteralType, SimpleType

SIMPLE_NAMES = {
    SimpleType.NONE: "none",
    SimpleType.INTEGER: "integer",
    SimpleType.FLOAT: "float",
    SimpleType.STRING: "string",
    SimpleType.BOOLEAN: "boolean",
    SimpleType.DATETIME: "datetime",
    SimpleType.DURATION: "duration",
    SimpleType.BINARY: "binary",
    SimpleType.ERROR: "error",
    SimpleType.STRUCT: "struct",
}


def type_name(lt: LiteralType) -> str:
    """A short name such as `list[integer]`, `map[str, datetime]` or `integer | none`."""
    kind = lt.WhichOneof("type")
    if kind == "simple":
        return SIMPLE_NAMES.get(lt.simple, f"simple type {lt.simple}")
    if kind == "collection_type":
        return f"list[{type_name(lt.collection_type)}]"
    if kind == "map_value_type":
        return f"map[str, {type_name(lt.map_value_type)}]"
    if kind == "blob":
        single = lt.blob.dimensionality == BlobType.SINGLE
        name = "file" if single else "directory"
        return f"{name}({lt.blob.format})" if lt.blob.format else name
    if kind == "enum_type":
        return "enum(" + ", ".join(lt.enum_type.values) + ")"
    if kind == "structured_dataset_type":
        fmt = lt.structured_dataset_type.format
        return f"structured dataset({fmt})" if fmt else "structured dataset"
    if kind == "union_type":
        return " | ".join(type_name(v) for v in lt.union_type.variants)
    if kind == "schema":
        return "schema"
    return "an unset type"


def literal_kind(lit: Literal) -> str:
    """What a literal actually holds, e.g. `a string literal` or `a collection literal`."""
    which = lit.WhichOneof("value")
    if which == "collection":
        return "a collection literal"
    if which == "map":
        return "a map literal"
    if which == "offloaded_metadata":
        return "an offloaded literal"
    if which != "scalar":
        return "an empty literal"
    scalar = lit.scalar.WhichOneof("value")
    if scalar == "primitive":
        prim = lit.scalar.primitive.WhichOneof("value") or "empty primitive"
        prim = {"float_value": "float", "string_value": "string"}.get(prim, prim)
        return f"a{'n' if prim[0] in 'aeiou' else ''} {prim} literal"
    if scalar == "binary":
        return f"a binary literal (tag {lit.scalar.binary.tag!r})"
    if scalar == "none_type":
        return "a none literal"
    names = {"structured_dataset": "structured dataset", "generic": "generic (Struct)"}
    return f"a {names.get(scalar, scalar or 'empty scalar')} literal"
