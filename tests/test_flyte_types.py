"""`connector_cli.adapters.flyte_types` answers what the Flyte SDK's own conversions answer
(`c0`'s CreateTask input conversion, `get_resource_proto`), on its fast paths and off them:
same values, same types, same key order, same errors, same bytes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

pytest.importorskip("flyte.connectors", reason="needs the flyte extra (make test installs it)")

import msgpack
from flyte.connectors import Resource
from flyte.connectors._connector import get_resource_proto
from flyte.types import TypeEngine
from flyteidl2.core import interface_pb2, literals_pb2, tasks_pb2
from flyteidl2.core.execution_pb2 import TaskExecution, TaskLog
from flyteidl2.task import common_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from connector_cli.adapters import flyte_types
from connector_cli.adapters.flyte_types import _engine_inputs, native_inputs, resource_proto

TYPES = [int, float, str, bool, dt.datetime, list[int]]
NAMES = st.text(alphabet="abcxyz_", min_size=1, max_size=4)


def primitive(**kw: Any) -> literals_pb2.Literal:
    return literals_pb2.Literal(scalar=literals_pb2.Scalar(primitive=literals_pb2.Primitive(**kw)))


LITERALS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda v: primitive(integer=v)),
    st.floats(allow_nan=False).map(lambda v: primitive(float_value=v)),
    st.text(max_size=5).map(lambda v: primitive(string_value=v)),
    st.booleans().map(lambda v: primitive(boolean=v)),
    st.just(primitive(datetime=Timestamp(seconds=1_700_000_000))),
    st.integers(min_value=0, max_value=9).map(lambda v: literals_pb2.Literal(
        scalar=literals_pb2.Scalar(binary=literals_pb2.Binary(value=msgpack.dumps(v),
                                                              tag="msgpack")))),
    st.just(literals_pb2.Literal(scalar=literals_pb2.Scalar(none_type=literals_pb2.Void()))),
    st.just(literals_pb2.Literal()),
    st.just(literals_pb2.Literal(collection=literals_pb2.LiteralCollection(
        literals=[primitive(integer=1)]))),
)


def template(types: dict[str, Any]) -> tasks_pb2.TaskTemplate:
    variables = [interface_pb2.VariableEntry(key=name, value=interface_pb2.Variable(
        type=TypeEngine.to_literal_type(kind))) for name, kind in types.items()]
    return tasks_pb2.TaskTemplate(type="t", interface=interface_pb2.TypedInterface(
        inputs=interface_pb2.VariableMap(variables=variables)))


async def outcome(coro: Any) -> Any:
    """The result with each value's type, in order, or the exception's type."""
    try:
        result = await coro
    except Exception as exc:  # noqa: BLE001 - comparing which error, not handling it
        return type(exc)
    return [(name, type(value), repr(value)) for name, value in result.items()]


MATCHING = {
    int: st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda v: primitive(integer=v)),
    float: st.floats().map(lambda v: primitive(float_value=v)),
    str: st.text(max_size=5).map(lambda v: primitive(string_value=v)),
    bool: st.booleans().map(lambda v: primitive(boolean=v)),
}


@st.composite
def requests(draw: Any) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """An interface and the inputs sent: mostly each input's own primitive (the fast path),
    sometimes another literal, a missing, repeated or undeclared name (the full path)."""
    kinds = st.one_of(st.sampled_from([int, float, str, bool]), st.sampled_from(TYPES))
    types = draw(st.dictionaries(NAMES, kinds, max_size=5))
    sent = [(name, draw(st.one_of(MATCHING.get(kind, LITERALS), LITERALS)
                        if draw(st.integers(0, 4)) == 0 else MATCHING.get(kind, LITERALS)))
            for name, kind in types.items() if draw(st.integers(0, 9))]
    return types, sent + draw(st.lists(st.tuples(NAMES, LITERALS), max_size=1))


@settings(max_examples=400, deadline=None)
@given(request=requests())
async def test_inputs_convert_as_the_flyte_sdk_converts_them(
        request: tuple[dict[str, Any], list[tuple[str, Any]]]) -> None:
    types, sent = request
    task = template(types)
    inputs = common_pb2.Inputs(literals=[common_pb2.NamedLiteral(name=n, value=v)
                                         for n, v in sent])
    expected = await outcome(_engine_inputs(task, inputs))
    for _ in range(2):  # the second time from the kept interface
        assert await outcome(native_inputs(task, inputs)) == expected


async def test_inputs_come_in_the_order_the_flyte_sdk_hands_them_over() -> None:
    """c0 hands inputs over in its protobuf map's order, which is seeded per process: equal
    to the sent order now and then, so the test sends eight orders and expects c0's in each,
    and the sent order not in all eight (a chance of 1 in 120**8)."""
    reordered = []
    for round_ in range(8):
        names = [f"{name}{round_}" for name in ("b", "a", "c", "zz", "q")]
        task = template(dict.fromkeys(names, int))
        inputs = common_pb2.Inputs(literals=[common_pb2.NamedLiteral(name=n, value=primitive(
            integer=i)) for i, n in enumerate(names)])
        got = await native_inputs(task, inputs)
        assert list(got) == list(await _engine_inputs(task, inputs))
        assert got == {n: i for i, n in enumerate(names)}
        reordered.append(list(got) != names)
    assert any(reordered)


async def test_no_inputs_or_an_unknown_type_behave_as_on_c0() -> None:
    task = template({"x": int})
    assert await native_inputs(task, None) == await native_inputs(task, common_pb2.Inputs()) == {}
    odd = tasks_pb2.TaskTemplate(interface=interface_pb2.TypedInterface(
        inputs=interface_pb2.VariableMap(variables=[interface_pb2.VariableEntry(
            key="x", value=interface_pb2.Variable())])))
    assert await outcome(native_inputs(odd, None)) == await outcome(_engine_inputs(odd, None))


def doubling() -> Any:
    from flyte.types._type_engine import SimpleTransformer

    return SimpleTransformer(
        "doubled", int, TypeEngine.to_literal_type(int),
        lambda v: primitive(integer=v * 2), lambda lv: lv.scalar.primitive.integer * 2)


def doubled_output(resource: Any) -> int:
    return int(resource.outputs.literals[0].value.scalar.primitive.integer)


@pytest.mark.parametrize("name", ["x", "y_first_seen_doubled"])
async def test_a_transformer_registered_over_int_is_used(
        monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Registered after the fast path has seen the interface and the output, or before."""
    task = template({name: int})
    inputs = common_pb2.Inputs(literals=[common_pb2.NamedLiteral(name=name,
                                                                 value=primitive(integer=4))])
    resource = Resource(phase=TaskExecution.SUCCEEDED, outputs={name: 4})
    if name == "x":
        assert await native_inputs(task, inputs) == {"x": 4}
        assert doubled_output(await resource_proto(resource)) == 4
    monkeypatch.setitem(TypeEngine._REGISTRY, int, doubling())
    for _ in range(2):
        assert await native_inputs(task, inputs) == {name: 8}
        assert doubled_output(await resource_proto(resource)) == 8


OUTPUT_VALUES = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text(max_size=300), st.booleans(),
    st.floats(allow_nan=False), st.none(), st.lists(st.integers(max_value=9), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(phase=st.sampled_from(list(TaskExecution.Phase.values())),
       message=st.one_of(st.none(), st.text(max_size=10)),
       outputs=st.one_of(st.none(), st.dictionaries(NAMES, OUTPUT_VALUES, max_size=4)),
       links=st.booleans(), info=st.booleans())
async def test_resources_convert_as_the_flyte_sdk_converts_them(
        phase: int, message: Any, outputs: Any, links: bool, info: bool) -> None:
    resource = Resource(phase=phase, message=message, outputs=outputs,
                        log_links=[TaskLog(name="l", uri="http://x")] if links else None,
                        custom_info={"a": 1} if info else None)
    expected = await outcome_proto(get_resource_proto(resource))
    for _ in range(2):  # the second time from the table
        assert await outcome_proto(resource_proto(resource)) == expected


async def outcome_proto(coro: Any) -> Any:
    try:
        return (await coro).SerializeToString(deterministic=True)
    except Exception as exc:  # noqa: BLE001 - comparing which error, not handling it
        return type(exc)


@pytest.mark.parametrize("first, second", [(1, True), (0, False), ("1", 1)])
async def test_equal_outputs_of_other_types_are_never_confused(first: Any, second: Any) -> None:
    for value in (first, second, first):
        resource = Resource(phase=TaskExecution.SUCCEEDED, outputs={"o": value})
        assert (await resource_proto(resource)).SerializeToString() == \
            (await get_resource_proto(resource)).SerializeToString()


async def test_the_tables_are_bounded() -> None:
    flyte_types._OUTPUTS.clear()
    for n in range(flyte_types.CACHE_ENTRIES + 10):
        await resource_proto(Resource(phase=TaskExecution.SUCCEEDED, outputs={"n": n}))
    assert len(flyte_types._OUTPUTS) <= flyte_types.CACHE_ENTRIES
    flyte_types._OUTPUTS.clear()
    await resource_proto(Resource(phase=TaskExecution.SUCCEEDED,
                                  outputs={"s": "x" * (flyte_types.CACHE_STR_CHARS + 1)}))
    assert not flyte_types._OUTPUTS
