"""A table of real flyteidl2 literals with their types, Python values and JSON forms.

The cases, type constants and literal builders here are shared by the test_literals_*
files (tests/test_literals_cases.py runs the table itself).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

import msgpack
from flyteidl2.core.interface_pb2 import TypedInterface, Variable, VariableEntry, VariableMap
from flyteidl2.core.literals_pb2 import (
    Binary,
    Blob,
    BlobMetadata,
    Literal,
    LiteralCollection,
    LiteralMap,
    Primitive,
    Scalar,
    StructuredDatasetMetadata,
    Union,
    Void,
)
from flyteidl2.core.literals_pb2 import StructuredDataset as SDLiteral
from flyteidl2.core.types_pb2 import (
    BlobType,
    EnumType,
    LiteralType,
    SimpleType,
    StructuredDatasetType,
    TypeStructure,
    UnionType,
)
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from connector_cli.literals import (
    FlyteDirectory,
    FlyteFile,
    StructuredDataset,
)

INT = LiteralType(simple=SimpleType.INTEGER)
FLOAT = LiteralType(simple=SimpleType.FLOAT)
STR = LiteralType(simple=SimpleType.STRING)
BOOL = LiteralType(simple=SimpleType.BOOLEAN)
DATETIME = LiteralType(simple=SimpleType.DATETIME)
DURATION = LiteralType(simple=SimpleType.DURATION)
NONE = LiteralType(simple=SimpleType.NONE)
STRUCT = LiteralType(simple=SimpleType.STRUCT)
CSV_FILE = LiteralType(blob=BlobType(format="csv", dimensionality=BlobType.SINGLE))
DIRECTORY = LiteralType(blob=BlobType(dimensionality=BlobType.MULTIPART))
PARQUET = LiteralType(structured_dataset_type=StructuredDatasetType(
    format="parquet", columns=[StructuredDatasetType.DatasetColumn(name="id", literal_type=INT)]))
COLOR = LiteralType(enum_type=EnumType(values=["red", "green", "blue"]))


def list_of(lt: LiteralType) -> LiteralType:
    return LiteralType(collection_type=lt)


def map_of(lt: LiteralType) -> LiteralType:
    return LiteralType(map_value_type=lt)


def tagged(lt: LiteralType, tag: str) -> LiteralType:
    copy = LiteralType()
    copy.CopyFrom(lt)
    copy.structure.CopyFrom(TypeStructure(tag=tag))
    return copy


def union_of(*variants: LiteralType) -> LiteralType:
    return LiteralType(union_type=UnionType(variants=list(variants)))


OPTIONAL_INT = union_of(tagged(INT, "int"), tagged(NONE, "none"))


def interface(inputs: dict[str, LiteralType] | None = None,
              outputs: dict[str, LiteralType] | None = None) -> TypedInterface:
    def varmap(types: dict[str, LiteralType] | None) -> VariableMap:
        return VariableMap(variables=[VariableEntry(key=k, value=Variable(type=t))
                                      for k, t in (types or {}).items()])
    return TypedInterface(inputs=varmap(inputs), outputs=varmap(outputs))


def prim(**kwargs: Any) -> Literal:
    return Literal(scalar=Scalar(primitive=Primitive(**kwargs)))


def coll(*items: Literal) -> Literal:
    return Literal(collection=LiteralCollection(literals=list(items)))


def lmap(**items: Literal) -> Literal:
    return Literal(map=LiteralMap(literals=items))


def packed(value: Any) -> Literal:
    return Literal(scalar=Scalar(binary=Binary(value=msgpack.packb(value), tag="msgpack")))


def union_value(value: Literal, variant: LiteralType) -> Literal:
    return Literal(scalar=Scalar(union=Union(value=value, type=variant)))


NONE_LITERAL = Literal(scalar=Scalar(none_type=Void()))
WHEN = datetime(2024, 5, 17, 9, 30, 15, 250000, tzinfo=timezone.utc)


class Case(NamedTuple):
    id: str
    type: LiteralType
    literal: Literal
    python: Any
    json: Any


CASES = [
    Case("integer", INT, prim(integer=-42), -42, -42),
    Case("float", FLOAT, prim(float_value=2.5), 2.5, 2.5),
    Case("string", STR, prim(string_value="héllo"), "héllo", "héllo"),
    Case("boolean", BOOL, prim(boolean=False), False, False),
    Case("datetime", DATETIME, prim(datetime=Timestamp(seconds=1715938215, nanos=250000000)),
         WHEN, "2024-05-17T09:30:15.250000Z"),
    Case("duration", DURATION, prim(duration=Duration(seconds=5400)), timedelta(hours=1, minutes=30),
         "1h30m"),
    Case("negative duration", DURATION, prim(duration=Duration(seconds=-1, nanos=-500000000)),
         timedelta(seconds=-1.5), "-1.5s"),
    Case("none", NONE, NONE_LITERAL, None, None),
    Case("list of ints", list_of(INT), coll(prim(integer=1), prim(integer=2)), [1, 2], [1, 2]),
    Case("empty list", list_of(STR), Literal(collection=LiteralCollection()), [], []),
    Case("map of strings", map_of(STR), lmap(a=prim(string_value="x")), {"a": "x"}, {"a": "x"}),
    Case("rows of datetimes", list_of(map_of(DATETIME)),
         coll(lmap(when=prim(datetime=Timestamp(seconds=1715938215, nanos=250000000)))),
         [{"when": WHEN}], [{"when": "2024-05-17T09:30:15.250000Z"}]),
    Case("msgpack dataclass", STRUCT, packed({"name": "ada", "tags": ["x"], "n": 3}),
         {"name": "ada", "tags": ["x"], "n": 3}, {"name": "ada", "tags": ["x"], "n": 3}),
    Case("file", CSV_FILE, Literal(scalar=Scalar(blob=Blob(uri="s3://b/k.csv", metadata=BlobMetadata(
        type=BlobType(format="csv", dimensionality=BlobType.SINGLE))))),
         FlyteFile("s3://b/k.csv", "csv"), {"uri": "s3://b/k.csv", "format": "csv"}),
    Case("directory", DIRECTORY, Literal(scalar=Scalar(blob=Blob(uri="s3://b/dir/", metadata=BlobMetadata(
        type=BlobType(dimensionality=BlobType.MULTIPART))))),
         FlyteDirectory("s3://b/dir/"), "s3://b/dir/"),
    Case("structured dataset", PARQUET, Literal(scalar=Scalar(structured_dataset=SDLiteral(
        uri="s3://b/t", metadata=StructuredDatasetMetadata(structured_dataset_type=PARQUET.structured_dataset_type)))),
         StructuredDataset("s3://b/t", "parquet"), {"uri": "s3://b/t", "format": "parquet"}),
    Case("enum", COLOR, prim(string_value="green"), "green", "green"),
    Case("optional set", OPTIONAL_INT, union_value(prim(integer=7), tagged(INT, "int")), 7, 7),
    Case("optional unset", OPTIONAL_INT, union_value(NONE_LITERAL, tagged(NONE, "none")), None, None),
    Case("list of optional files", list_of(union_of(CSV_FILE, NONE)),
         coll(union_value(NONE_LITERAL, NONE)), [None], [None]),
]


IDS = [c.id for c in CASES]
