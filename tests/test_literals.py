"""Literal conversion against a table of real flyteidl2 literals, plus every error path."""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime, timedelta, timezone
from typing import Any

import msgpack
import pytest
from flyteidl2.core.literals_pb2 import Literal, LiteralOffloadedMetadata, Scalar
from flyteidl2.core.types_pb2 import BlobType, LiteralType, SimpleType
from flyteidl2.task.common_pb2 import Inputs, NamedLiteral, Outputs
from google.protobuf.struct_pb2 import Struct

from connector_cli.errors import LiteralError, UsageError
from connector_cli.literals import (
    FlyteDirectory,
    FlyteFile,
    StructuredDataset,
    infer_literal_type,
    inputs_to_python,
    json_to_inputs,
    literal_to_python,
    outputs_to_proto,
    python_to_literal,
    to_json,
)
from tests.helpers.literal_cases import (
    BOOL,
    COLOR,
    CSV_FILE,
    DATETIME,
    DIRECTORY,
    DURATION,
    FLOAT,
    INT,
    NONE,
    OPTIONAL_INT,
    STR,
    STRUCT,
    coll,
    interface,
    list_of,
    lmap,
    map_of,
    packed,
    prim,
    union_of,
)


def test_inputs_are_keyed_by_name_whatever_their_order() -> None:
    iface = interface({"a": INT, "b": list_of(STR)})
    forward = Inputs(literals=[NamedLiteral(name="a", value=prim(integer=1)),
                               NamedLiteral(name="b", value=coll(prim(string_value="s")))])
    backward = Inputs(literals=list(reversed(forward.literals)))
    assert inputs_to_python(forward, iface) == inputs_to_python(backward, iface) == {"a": 1, "b": ["s"]}
    assert inputs_to_python(None, iface) == {}
    assert inputs_to_python(forward) == {"a": 1, "b": ["s"]}


def test_each_request_is_read_with_its_own_interface() -> None:
    """The input readers remember the last interface: alternating interfaces, and one
    changed after it was used, still give each request its own declared types."""
    as_int, as_str = interface({"x": INT}), interface({"x": STR})
    number = Inputs(literals=[NamedLiteral(name="x", value=prim(integer=7))])
    text = Inputs(literals=[NamedLiteral(name="x", value=prim(string_value="7"))])
    for _ in range(2):
        assert inputs_to_python(number, as_int) == {"x": 7}
        assert inputs_to_python(text, as_str) == {"x": "7"}
        with pytest.raises(LiteralError, match="input 'x': expected"):
            inputs_to_python(text, as_int)
    as_int.inputs.variables[0].value.type.CopyFrom(STR)
    assert inputs_to_python(text, as_int) == {"x": "7"}


@pytest.mark.parametrize("declared, literal, value", [
    (INT, prim(integer=0), 0), (STR, prim(string_value=""), ""), (BOOL, prim(boolean=False), False),
    (INT, prim(integer=-5), -5), (BOOL, prim(boolean=True), True),
])
def test_zero_and_set_primitives_read_as_declared(declared: LiteralType, literal: Literal,
                                                  value: Any) -> None:
    inputs = Inputs(literals=[NamedLiteral(name="v", value=literal)])
    got = inputs_to_python(inputs, interface({"v": declared}))["v"]
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("declared, literal", [
    (INT, prim(string_value="")), (INT, prim(boolean=False)), (STR, prim(integer=0)),
    (BOOL, prim(integer=0)), (INT, Literal()), (STR, prim()),
])
def test_a_zero_of_another_kind_is_not_the_declared_one(declared: LiteralType,
                                                        literal: Literal) -> None:
    inputs = Inputs(literals=[NamedLiteral(name="v", value=literal)])
    with pytest.raises(LiteralError, match="input 'v': expected"):
        inputs_to_python(inputs, interface({"v": declared}))


def test_undeclared_input_is_read_untyped() -> None:
    inputs = Inputs(literals=[NamedLiteral(name="extra", value=prim(float_value=1.5))])
    assert inputs_to_python(inputs, interface({"a": INT})) == {"extra": 1.5}


def test_duplicate_input_name_is_an_error() -> None:
    named = NamedLiteral(name="a", value=prim(integer=1))
    with pytest.raises(LiteralError, match="input 'a' appears more than once"):
        inputs_to_python(Inputs(literals=[named, named]))


def test_generic_struct_and_msgpack_are_both_struct() -> None:
    generic = Struct()
    generic.update({"a": 1, "b": [True, None, "x"], "c": {"d": 2.5}})
    lit = Literal(scalar=Scalar(generic=generic))
    assert literal_to_python(lit, STRUCT) == {"a": 1.0, "b": [True, None, "x"], "c": {"d": 2.5}}
    assert literal_to_python(lit) == literal_to_python(lit, STRUCT)
    assert literal_to_python(packed({"a": 1}), STRUCT) == {"a": 1}


def test_msgpack_encoded_scalar_reads_with_its_declared_type() -> None:
    assert literal_to_python(packed(5), INT) == 5
    assert literal_to_python(packed("2024-01-01T00:00:00Z"), DATETIME) == datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert literal_to_python(packed([1, 2]), list_of(FLOAT)) == [1.0, 2.0]
    with pytest.raises(LiteralError, match=r"input 'n': expected an integer, got 'five'"):
        literal_to_python(packed("five"), INT, "n")


def test_raw_binary_reads_as_bytes() -> None:
    binary = LiteralType(simple=SimpleType.BINARY)
    lit = python_to_literal(b"\x00\x01", binary)
    assert lit.scalar.binary.tag == "" and literal_to_python(lit, binary) == b"\x00\x01"
    assert to_json(b"\x00\x01") == "AAE="
    assert literal_to_python(python_to_literal({"k": 1}, binary), binary) == {"k": 1}


def test_unwrapped_value_for_a_union_picks_the_matching_variant() -> None:
    assert literal_to_python(prim(integer=3), OPTIONAL_INT) == 3
    assert literal_to_python(Literal(scalar=Scalar(none_type={})), OPTIONAL_INT) is None


def test_union_prefers_the_variant_of_the_exact_python_type() -> None:
    number = union_of(FLOAT, INT)
    assert python_to_literal(3, number).scalar.union.type == INT
    assert python_to_literal(3.0, number).scalar.union.type == FLOAT
    assert python_to_literal("3", union_of(DATETIME, STR)).scalar.union.type == STR
    assert python_to_literal("2024-01-01", union_of(DATETIME, INT)).scalar.union.type == DATETIME


def test_offloaded_literal_names_the_input() -> None:
    lit = Literal(offloaded_metadata=LiteralOffloadedMetadata(uri="s3://big/x.pb", size_bytes=10))
    inputs = Inputs(literals=[NamedLiteral(name="table", value=lit)])
    with pytest.raises(LiteralError, match=r"^input 'table': the value is offloaded to s3://big/x.pb"):
        inputs_to_python(inputs, interface({"table": list_of(INT)}))
    with pytest.raises(LiteralError, match="offloaded"):
        inputs_to_python(inputs)


@pytest.mark.parametrize(
    ("lt", "literal", "message"),
    [
        (INT, prim(string_value="x"), "input 'v': expected integer, got a string literal"),
        (list_of(INT), coll(prim(integer=1), prim(float_value=2.0)),
         r"input 'v\[1\]': expected integer, got a float literal"),
        (map_of(list_of(DATETIME)), lmap(rows=coll(prim(integer=1))),
         r"input 'v.rows\[0\]': expected datetime, got an integer literal"),
        (COLOR, prim(string_value="pink"), "input 'v': expected one of 'red', 'green', 'blue', got 'pink'"),
        (OPTIONAL_INT, prim(string_value="x"), r"input 'v': expected integer \| none, got a string literal"),
        (CSV_FILE, prim(string_value="s3://x"), r"input 'v': expected file\(csv\), got a string literal"),
        (STRUCT, Literal(), "input 'v': expected struct, got an empty literal"),
        (NONE, prim(integer=0), "input 'v': expected none, got an integer literal"),
        (list_of(INT), prim(integer=0), r"input 'v': expected list\[integer\], got an integer literal"),
        (STRUCT, Literal(scalar=Scalar(binary={"value": b"\xc1", "tag": "msgpack"})),
         "input 'v': invalid msgpack bytes"),
    ],
)
def test_literal_errors_name_input_and_path(lt: LiteralType, literal: Literal, message: str) -> None:
    inputs = Inputs(literals=[NamedLiteral(name="v", value=literal)])
    with pytest.raises(LiteralError, match=f"^{message}"):
        inputs_to_python(inputs, interface({"v": lt}))


def test_odd_map_keys_are_quoted_in_paths() -> None:
    with pytest.raises(LiteralError, match=r"input 'v\['a key'\]': expected integer"):
        literal_to_python(lmap(**{"a key": prim(string_value="x")}), map_of(INT), "v")


def test_literal_error_is_a_usage_error() -> None:
    assert issubclass(LiteralError, UsageError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)), ("1h30m", timedelta(minutes=90)), ("1.5s", timedelta(seconds=1.5)),
        ("PT1H30M", timedelta(minutes=90)), ("P1DT2S", timedelta(days=1, seconds=2)), (90, timedelta(seconds=90)),
        (0.25, timedelta(milliseconds=250)), ("-2m", timedelta(minutes=-2)), ("500ms", timedelta(milliseconds=500)),
        ("1h0m0.000001s", timedelta(hours=1, microseconds=1)), ("3d", timedelta(days=3)), ("12", timedelta(seconds=12)),
    ],
)
def test_duration_json_forms(text: Any, expected: timedelta) -> None:
    lit = json_to_inputs({"d": text}, interface({"d": DURATION})).literals[0].value
    assert literal_to_python(lit, DURATION) == expected


@pytest.mark.parametrize("text", ["", "1x", "PT", "P", "abc", "1h 30m", "h", True, [1], float("inf")])
def test_bad_durations(text: Any) -> None:
    with pytest.raises(LiteralError, match=r"^input 'd': expected a duration \(\"90s\""):
        json_to_inputs({"d": text}, interface({"d": DURATION}))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-17T09:30:00Z", datetime(2024, 5, 17, 9, 30, tzinfo=timezone.utc)),
        ("2024-05-17T11:30:00+02:00", datetime(2024, 5, 17, 9, 30, tzinfo=timezone.utc)),
        ("2024-05-17T09:30:00", datetime(2024, 5, 17, 9, 30, tzinfo=timezone.utc)),
        ("2024-05-17", datetime(2024, 5, 17, tzinfo=timezone.utc)),
    ],
)
def test_datetimes_become_aware_utc(text: str, expected: datetime) -> None:
    lit = python_to_literal(text, DATETIME)
    value = literal_to_python(lit, DATETIME)
    assert value == expected and value.tzinfo is timezone.utc


def test_issue_example_error_message() -> None:
    iface = interface({"rows": list_of(map_of(DATETIME))})
    rows = [{"when": "2024-01-01"}] * 3 + [{"when": "yesterday"}]
    with pytest.raises(LiteralError) as info:
        json_to_inputs({"rows": rows}, iface)
    assert str(info.value) == "input 'rows[3].when': expected a datetime (ISO 8601), got 'yesterday'"


@pytest.mark.parametrize(
    ("lt", "value", "message"),
    [
        (INT, True, r"expected an integer, got True \(bool\)"),
        (INT, 1.5, r"expected an integer, got 1.5 \(float\)"),
        (INT, 2**63, "integer 9223372036854775808 is outside the 64-bit range"),
        (FLOAT, "1.0", "expected a float, got '1.0'"),
        (STR, 5, r"expected a string, got 5 \(int\)"),
        (BOOL, "true", r"expected a boolean \(true/false\), got 'true'"),
        (NONE, 0, r"expected none \(null\), got 0 \(int\)"),
        (list_of(INT), "1,2", r"expected a list of integer, got '1,2'"),
        (map_of(INT), [1], r"expected an object \(map of integer\), got \[1\] \(list\)"),
        (map_of(INT), {1: 1}, r"map keys must be strings, got 1 \(int\)"),
        (STRUCT, [1], r"expected an object \(struct\), got \[1\] \(list\)"),
        (STRUCT, {"a": object()}, "cannot encode"),
        (CSV_FILE, FlyteDirectory("s3://d"), "expected a file"),
        (CSV_FILE, {"uri": "s3://x", "size": 1}, "expected a file"),
        (CSV_FILE, "", "expected a file"),
        (DIRECTORY, 3, "expected a directory"),
        (COLOR, "pink", "expected one of 'red', 'green', 'blue', got 'pink'"),
        (OPTIONAL_INT, "x", r"expected integer \| none, got 'x'"),
        (list_of(OPTIONAL_INT), [1, None, "x"], r"'v\[2\]': expected integer \| none"),
    ],
)
def test_python_errors(lt: LiteralType, value: Any, message: str) -> None:
    with pytest.raises(LiteralError, match=message):
        json_to_inputs({"v": value}, interface({"v": lt}))


def test_integral_floats_are_accepted_for_integers() -> None:
    assert python_to_literal(3.0, INT) == prim(integer=3)
    assert python_to_literal(3, FLOAT) == prim(float_value=3.0)


class Color(enum.Enum):
    RED = "red"


def test_python_enum_members_write_their_value() -> None:
    assert python_to_literal(Color.RED, COLOR) == prim(string_value="red")
    assert infer_literal_type(Color.RED) == LiteralType(enum_type={"values": ["red"]})


def test_json_to_inputs_defaults_unknown_and_missing() -> None:
    iface = interface({"a": INT, "b": STR, "c": FLOAT})
    inputs = json_to_inputs({"a": 1}, iface, defaults={"b": prim(string_value="d"), "c": prim(float_value=0.5)})
    assert inputs_to_python(inputs, iface) == {"a": 1, "b": "d", "c": 0.5}
    with pytest.raises(LiteralError, match=r"^unknown inputs 'x', 'y'; known inputs: a, b, c$"):
        json_to_inputs({"a": 1, "x": 1, "y": 2}, iface)
    with pytest.raises(LiteralError, match=r"^missing inputs 'b' \(string\), 'c' \(float\) with no default"):
        json_to_inputs({"a": 1}, iface)
    with pytest.raises(LiteralError, match="known inputs: \\(the task declares none\\)"):
        json_to_inputs({"a": 1}, interface())
    with pytest.raises(LiteralError, match="inputs must be a JSON object"):
        json_to_inputs([1], iface)  # type: ignore[arg-type]


def test_json_to_inputs_without_interface_infers() -> None:
    inputs = json_to_inputs({"n": 1, "xs": [1.5], "flag": True}, None)
    assert inputs_to_python(inputs) == {"n": 1, "xs": [1.5], "flag": True}
    assert inputs.literals[2].value == prim(boolean=True)


@dataclasses.dataclass
class Point:
    x: int
    when: datetime
    label: str = "p"


class Model:
    """Follows the pydantic v2 protocol (`model_dump(mode="json")`)."""

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        assert mode == "json"
        return {"kind": "model", "size": 2}


def test_outputs_inferred_from_python_values() -> None:
    when = datetime(2024, 1, 1, tzinfo=timezone.utc)
    values = {
        "flag": True, "n": 3, "ratio": 0.5, "name": "x", "nothing": None, "when": when,
        "took": timedelta(seconds=2), "ints": [1, 2], "scores": {"a": 1.0}, "record": {"a": 1, "b": "x"},
        "point": Point(1, when), "model": Model(), "report": FlyteFile("s3://r.html", "html"),
        "dir": FlyteDirectory("s3://d/"), "table": StructuredDataset("s3://t", "parquet"),
    }
    outputs = outputs_to_proto(values)
    assert isinstance(outputs, Outputs)
    literals = {n.name: n.value for n in outputs.literals}
    assert literals["flag"] == prim(boolean=True) and literals["n"] == prim(integer=3)
    assert literals["ints"].collection.literals[1] == prim(integer=2)
    assert literals["scores"].map.literals["a"] == prim(float_value=1.0)
    assert literals["record"] == packed({"a": 1, "b": "x"})
    assert msgpack.unpackb(literals["point"].scalar.binary.value) == {
        "x": 1, "when": "2024-01-01T00:00:00Z", "label": "p"}
    assert literals["model"] == packed({"kind": "model", "size": 2})
    assert literals["dir"].scalar.blob.metadata.type.dimensionality == BlobType.MULTIPART
    back = inputs_to_python(Inputs(literals=outputs.literals))
    assert back["report"] == values["report"] and back["table"] == values["table"]
    assert back["when"] == when and back["took"] == values["took"] and back["nothing"] is None


def test_outputs_use_declared_types() -> None:
    iface = interface(outputs={"ratio": FLOAT, "maybe": OPTIONAL_INT, "path": CSV_FILE})
    outputs = outputs_to_proto({"ratio": 1, "path": "s3://x.csv"}, iface)
    literals = {n.name: n.value for n in outputs.literals}
    assert literals["ratio"] == prim(float_value=1.0)
    assert literals["maybe"].scalar.union.value.scalar.HasField("none_type")
    assert literals["path"].scalar.blob.metadata.type.format == "csv"
    with pytest.raises(LiteralError, match=r"^output 'ratio': expected a float, got 'high'"):
        outputs_to_proto({"ratio": "high", "path": "s3://x"}, iface)
    with pytest.raises(LiteralError, match=r"^unknown output 'extra'; declared outputs: ratio, maybe, path"):
        outputs_to_proto({"ratio": 1.0, "path": "s3://x", "extra": 1}, iface)
    with pytest.raises(LiteralError, match=r"^missing output 'path' \(file\(csv\)\)"):
        outputs_to_proto({"ratio": 1.0}, iface)


def test_ready_outputs_and_literals_pass_through() -> None:
    ready = Outputs(literals=[NamedLiteral(name="o", value=prim(integer=1))])
    assert outputs_to_proto(ready) is ready
    assert outputs_to_proto(None) is None
    lit = prim(string_value="as is")
    assert python_to_literal(lit, INT) is lit
    outputs = outputs_to_proto({"o": lit}, interface(outputs={"o": STR}))
    assert outputs.literals[0].value == lit
    with pytest.raises(LiteralError, match="outputs must be a dict"):
        outputs_to_proto([1])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, BOOL), (1, INT), (1.0, FLOAT), ("s", STR), (None, NONE),
        (datetime(2024, 1, 1, tzinfo=timezone.utc), DATETIME), (timedelta(1), DURATION),
        ([1, 2], list_of(INT)), ([], list_of(NONE)), ([[True]], list_of(list_of(BOOL))),
        ({"a": 1}, map_of(INT)), ({"a": {"b": "c"}}, map_of(map_of(STR))), ({}, STRUCT),
        ({1: "a"}, STRUCT), ({"a": 1, "b": "x"}, STRUCT),
        (FlyteFile("s3://x", "csv"), CSV_FILE), (FlyteDirectory("s3://d"), DIRECTORY),
    ],
)
def test_infer_literal_type(value: Any, expected: LiteralType) -> None:
    assert infer_literal_type(value) == expected


def test_infer_errors() -> None:
    with pytest.raises(LiteralError, match=r"list elements have different types \(integer, string\)"):
        infer_literal_type([1, "a"])
    with pytest.raises(LiteralError, match=r"^value '\[1\]': cannot infer a Flyte type for <object"):
        infer_literal_type([1, object()])
    with pytest.raises(LiteralError, match="^output 'o': cannot infer"):
        outputs_to_proto({"o": object()})


def test_dataclass_infers_struct_with_a_json_schema() -> None:
    lt = infer_literal_type(Point(1, datetime(2024, 1, 1, tzinfo=timezone.utc)))
    assert lt.simple == SimpleType.STRUCT
    schema = dict(lt.metadata)
    assert schema["title"] == "Point" and list(schema["required"]) == ["x", "when", "label"]
    assert schema["properties"]["when"]["type"] == "string"
    with pytest.raises(LiteralError, match=r"^value: missing field 'label'"):
        python_to_literal({"x": 1, "when": "2024-01-01"}, lt)


def test_to_json_forms() -> None:
    assert to_json({"t": (1, 2), "s": StructuredDataset("s3://t"), "c": Color.RED, "p": Point(
        1, datetime(2024, 1, 1, tzinfo=timezone.utc))}) == {
        "t": [1, 2], "s": "s3://t", "c": "red", "p": {"x": 1, "when": "2024-01-01T00:00:00Z", "label": "p"}}
    assert to_json(timedelta(0)) == "0s" and to_json(timedelta(hours=-1)) == "-1h"


def test_compiled_converters_are_reused_and_immune_to_later_mutation() -> None:
    from connector_cli.literals._decode import READERS

    lt = map_of(list_of(INT))
    literal = lmap(k=coll(prim(integer=1)))
    assert literal_to_python(literal, lt) == {"k": [1]}
    size = len(READERS)
    assert literal_to_python(literal, lt) == {"k": [1]}
    assert len(READERS) == size
    lt.map_value_type.collection_type.simple = SimpleType.FLOAT
    assert literal_to_python(literal, lt) == {"k": [1.0]}
    assert literal_to_python(literal, map_of(list_of(INT))) == {"k": [1]}
