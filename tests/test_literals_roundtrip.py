"""Property: JSON -> Literal -> Python -> Literal (and -> JSON -> Literal) is stable for every type."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from flyteidl2.core.types_pb2 import LiteralType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector_cli.literals import json_to_inputs, literal_to_python, python_to_literal, to_json
from connector_cli.literals._values import format_duration
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
    PARQUET,
    STR,
    STRUCT,
    interface,
    list_of,
    map_of,
    union_of,
)

BASE_TYPES = [INT, FLOAT, STR, BOOL, DATETIME, DURATION, NONE, STRUCT, CSV_FILE, DIRECTORY, PARQUET, COLOR]

def flat_union(*types: LiteralType) -> LiteralType:
    """A union as Python typing (and so Flyte) builds one: nested unions flattened, repeated
    variants dropped, a single variant left bare."""
    variants: list[LiteralType] = []
    for t in types:
        for v in (t.union_type.variants if t.HasField("union_type") else [t]):
            if v not in variants:
                variants.append(v)
    return variants[0] if len(variants) == 1 else union_of(*variants)


literal_types = st.recursive(
    st.sampled_from(BASE_TYPES),
    lambda inner: st.one_of(
        inner.map(list_of),
        inner.map(map_of),
        inner.map(lambda t: flat_union(t, NONE)),
        st.lists(inner, min_size=2, max_size=3).map(lambda ts: flat_union(*ts)),
    ),
    max_leaves=6,
)

json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
)
json_objects = st.dictionaries(
    st.text(max_size=6),
    st.recursive(json_leaves, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                 max_leaves=5),
    max_size=4,
)
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
datetimes = st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 1, 1), timezones=offsets)
durations = st.timedeltas(min_value=timedelta(days=-10**5), max_value=timedelta(days=10**5))
uris = st.text(min_size=1, max_size=12).map(lambda s: "s3://bucket/" + s)


def locations(declared_format: str) -> st.SearchStrategy[Any]:
    return uris | st.builds(lambda u, f: {"uri": u, "format": f}, uris, st.sampled_from(["", declared_format, "json"]))


def json_values(lt: LiteralType) -> st.SearchStrategy[Any]:
    """JSON data valid for `lt`, in every form inputs.json accepts."""
    kind = lt.WhichOneof("type")
    if kind == "collection_type":
        return st.lists(json_values(lt.collection_type), max_size=4)
    if kind == "map_value_type":
        return st.dictionaries(st.text(max_size=6), json_values(lt.map_value_type), max_size=4)
    if kind == "union_type":
        return st.one_of([json_values(v) for v in lt.union_type.variants])
    if kind == "enum_type":
        return st.sampled_from(list(lt.enum_type.values))
    if kind == "blob":
        return locations(lt.blob.format)
    if kind == "structured_dataset_type":
        return locations("parquet")
    simple = {
        INT.simple: st.integers(-(2**63), 2**63 - 1),
        FLOAT.simple: st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53),
        STR.simple: st.text(),
        BOOL.simple: st.booleans(),
        DATETIME.simple: datetimes.map(lambda d: d.isoformat()),
        DURATION.simple: durations.map(format_duration) | st.integers(-(10**9), 10**9)
        | st.floats(-1e6, 1e6, allow_nan=False),
        NONE.simple: st.none(),
        STRUCT.simple: json_objects,
    }
    return simple[lt.simple]


@st.composite
def typed_json(draw: st.DrawFn) -> tuple[LiteralType, Any]:
    lt = draw(literal_types)
    return lt, draw(json_values(lt))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(typed_json())
def test_json_literal_python_literal_is_stable(case: tuple[LiteralType, Any]) -> None:
    lt, value = case
    iface = interface({"x": lt})
    first = json_to_inputs({"x": value}, iface).literals[0].value
    python = literal_to_python(first, lt, "x")
    assert python_to_literal(python, lt, "x") == first
    assert literal_to_python(first) == python
    printed = json.loads(json.dumps(to_json(python)))
    again = json_to_inputs({"x": printed}, iface).literals[0].value
    if not _has_union(lt):
        assert again == first
    else:
        settled = _settle(printed, lt)
        assert _settle(settled, lt) == settled


def _settle(printed: Any, lt: LiteralType) -> Any:
    """JSON -> literal -> printed JSON (a union may re-pick the variant once, then stays)."""
    literal = json_to_inputs({"x": printed}, interface({"x": lt})).literals[0].value
    return json.loads(json.dumps(to_json(literal_to_python(literal, lt))))


def _has_union(lt: LiteralType) -> bool:
    """Union JSON forms can be ambiguous ("0s" fits string and duration); see docs/literals.md."""
    return "union_type" in str(lt)


@settings(max_examples=100, deadline=None)
@given(st.recursive(json_leaves.filter(lambda v: not isinstance(v, float) or v == v), lambda c: st.lists(c, max_size=3)
                    | st.dictionaries(st.text(max_size=4), c, max_size=3), max_leaves=8))
def test_inferred_outputs_round_trip(value: Any) -> None:
    from connector_cli.errors import LiteralError

    try:
        literal = python_to_literal(value)
    except LiteralError as exc:
        assert "different types" in str(exc)
        return
    python = literal_to_python(literal)
    assert python == value
    assert python_to_literal(python) == literal
