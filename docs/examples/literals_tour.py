"""A tour of connector_cli.literals: JSON -> Inputs -> Python, Python -> Outputs, errors."""

from datetime import datetime, timedelta, timezone

from flyteidl2.core.interface_pb2 import TypedInterface, Variable, VariableEntry, VariableMap
from flyteidl2.core.types_pb2 import BlobType, LiteralType, SimpleType

from connector_cli.errors import LiteralError
from connector_cli.literals import (
    FlyteFile,
    inputs_to_python,
    json_to_inputs,
    outputs_to_proto,
    python_to_literal,
    to_json,
)


def variables(**types: LiteralType) -> VariableMap:
    entries = [VariableEntry(key=k, value=Variable(type=t)) for k, t in types.items()]
    return VariableMap(variables=entries)


DATETIME = LiteralType(simple=SimpleType.DATETIME)
rows = LiteralType(collection_type=LiteralType(map_value_type=DATETIME))
interface = TypedInterface(
    inputs=variables(
        rows=rows,
        timeout=LiteralType(simple=SimpleType.DURATION),
        source=LiteralType(blob=BlobType(format="csv")),
        limit=LiteralType(simple=SimpleType.INTEGER),
    ),
    outputs=variables(row_count=LiteralType(simple=SimpleType.INTEGER)),
)

# `flyte-connector test` turns inputs.json into Inputs; `limit` comes from its default.
inputs = json_to_inputs(
    {"rows": [{"when": "2024-05-17T09:30:00Z"}], "timeout": "1h30m", "source": "s3://bucket/in.csv"},
    interface,
    defaults={"limit": python_to_literal(100)},
)

# The daemon hands these Python values to the connector's `create`.
values = inputs_to_python(inputs, interface)
assert values == {
    "rows": [{"when": datetime(2024, 5, 17, 9, 30, tzinfo=timezone.utc)}],
    "timeout": timedelta(hours=1, minutes=30),
    "source": FlyteFile("s3://bucket/in.csv", "csv"),
    "limit": 100,
}
assert to_json(values)["timeout"] == "1h30m"

# With an interface, declared output types are used; without one (the daemon's GetTask)
# values are inferred (here `interface=None`: bool stays bool, not int).
outputs = outputs_to_proto({"row_count": 3}, interface)
assert outputs.literals[0].value.scalar.primitive.integer == 3
inferred = outputs_to_proto({"done": True}, None)
assert inferred.literals[0].value.scalar.primitive.boolean is True

# Errors name the input and the path inside it.
try:
    bad = {"rows": [{"when": "yesterday"}], "timeout": 90, "source": "s3://x", "limit": 1}
    json_to_inputs(bad, interface)
except LiteralError as error:
    assert str(error) == "input 'rows[0].when': expected a datetime (ISO 8601), got 'yesterday'"
else:
    raise AssertionError("expected a LiteralError")
