"""`connector_cli.wire` writes GetTask and CreateTask responses as bytes: they must be byte
for byte what the message path (`fill_resource` then `SerializeToString`) gives, or None so
that path runs. Also through a real daemon: what the daemon sends parses to that message."""

from __future__ import annotations

import math
from typing import Any

import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.core.execution_pb2 import TaskExecution, TaskLog
from hypothesis import given, settings
from hypothesis import strategies as st

from connector_cli import wire
from connector_cli.responses import ContractError, fill_resource
from connector_cli.sdk.connector import Resource

PHASES = [p for p in TaskExecution.Phase.values() if p]
SCALARS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text(max_size=300), st.booleans(),
    st.none(), st.floats(allow_nan=True), st.binary(max_size=20),
)
VALUES = st.one_of(SCALARS, st.lists(st.integers(min_value=-1000, max_value=1000), max_size=3),
                   st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


def message_bytes(resource: Any) -> bytes:
    response = pb.GetTaskResponse()
    fill_resource(response.resource, resource, "bench.get")
    return response.SerializeToString()  # type: ignore[no-any-return]


@settings(max_examples=400, deadline=None)
@given(phase=st.sampled_from(PHASES), message=st.one_of(st.none(), st.text(max_size=50)),
       outputs=st.one_of(st.none(), st.dictionaries(st.text(max_size=8), VALUES, max_size=4)))
def test_get_response_is_the_message_path_byte_for_byte(
    phase: int, message: Any, outputs: Any
) -> None:
    resource = Resource(phase=phase, message=message, outputs=outputs)
    try:
        expected = message_bytes(resource)
    except (ContractError, TypeError, ValueError):
        assert wire.get_response(resource) is None
        return
    converted = "outputs cannot be converted" not in pb.GetTaskResponse.FromString(
        expected).resource.message  # else the message path made it FAILED: the fast path
    for _ in range(2):  # the second time from the literal cache
        got = wire.get_response(resource)
        assert got == expected if converted else got is None  # the fast path ran and agrees


@pytest.mark.parametrize("first, second", [(0.0, -0.0), (1, True), (0, False), ("1", 1)])
def test_equal_values_of_other_types_or_signs_are_never_confused(first: Any, second: Any) -> None:
    for value in (first, second):
        resource = Resource(phase=TaskExecution.SUCCEEDED, outputs={"o": value})
        got = wire.get_response(resource)
        assert got is None or got == message_bytes(resource)
        parsed = pb.GetTaskResponse.FromString(got or message_bytes(resource))
        literal = parsed.resource.outputs.literals[0].value
        if isinstance(value, float):
            assert math.copysign(1, literal.scalar.primitive.float_value) == math.copysign(1, value)
        elif isinstance(value, bool):
            assert literal.scalar.primitive.boolean is value
        elif isinstance(value, int):
            assert literal.scalar.primitive.integer == value


@pytest.mark.parametrize("resource", [
    Resource(phase=TaskExecution.RUNNING, log_links=[TaskLog(name="l", uri="http://x")]),
    Resource(phase=TaskExecution.RUNNING, custom_info={"a": 1}),
    Resource(phase=TaskExecution.SUCCEEDED, outputs={"bad": object()}),
    Resource(phase=TaskExecution.RUNNING, message="lone surrogate \ud800"),
    pb.Resource(phase=TaskExecution.RUNNING),
])
def test_anything_but_a_plain_resource_goes_through_the_message_path(resource: Any) -> None:
    assert wire.get_response(resource) is None


def test_a_phase_changed_after_construction_is_left_to_the_message_path() -> None:
    resource = Resource(phase=TaskExecution.RUNNING)
    resource.phase = 0
    assert wire.get_response(resource) is None
    resource.phase = "SUCCEEDED"  # type: ignore[assignment]
    assert wire.get_response(resource) is None


def test_the_literal_table_is_bounded() -> None:
    wire._LITERALS.clear()
    for n in range(wire.CACHE_ENTRIES + 50):
        wire.get_response(Resource(phase=TaskExecution.SUCCEEDED, outputs={"n": n}))
    assert len(wire._LITERALS) == wire.CACHE_ENTRIES
    long = "x" * (wire.CACHE_STR_CHARS + 1)
    wire._LITERALS.clear()
    wire.get_response(Resource(phase=TaskExecution.SUCCEEDED, outputs={"s": long}))
    assert not wire._LITERALS


@pytest.mark.parametrize("meta", [b"", b"{}", b'{"job_id":"j"}', bytes(range(256)) * 3])
def test_create_response_is_the_message_byte_for_byte(meta: bytes) -> None:
    assert wire.create_response(meta) == pb.CreateTaskResponse(resource_meta=meta).SerializeToString()


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**35, 2**63 - 1, -1, -(2**63)])
def test_varint_matches_protobuf(value: int) -> None:
    from flyteidl2.core.literals_pb2 import Primitive

    encoded = Primitive(integer=value).SerializeToString()
    assert encoded == b"\x08" + wire.varint(value)


async def test_the_daemon_sends_what_the_message_path_builds() -> None:
    import grpc.aio
    from flyteidl2.connector.service_pb2_grpc import AsyncConnectorServiceStub

    from connector_cli import AsyncConnector, ResourceMeta
    from connector_cli.sdk.registry import ConnectorRegistry
    from connector_cli.testing import serve_in_background

    resources = [
        Resource(phase=TaskExecution.SUCCEEDED, message="ok", outputs={"o0": 42, "o1": "done"}),
        Resource(phase=TaskExecution.RUNNING, message="é ü 日本"),
        Resource(phase=TaskExecution.SUCCEEDED, outputs={"f": -0.0, "l": [1, 2], "b": b"\x00"}),
        Resource(phase=TaskExecution.RUNNING, log_links=[TaskLog(name="l", uri="http://x")]),
        Resource(phase=TaskExecution.SUCCEEDED, outputs={"bad": object()}),
    ]

    class Replay(AsyncConnector):
        task_type_name = "replay"

        async def create(self, task_template: Any, output_prefix: str, inputs: Any = None,
                         **kwargs: Any) -> ResourceMeta:
            return ResourceMeta()

        async def get(self, resource_meta: ResourceMeta, **kwargs: Any) -> Any:
            return resources[self.calls.pop(0)]

        async def delete(self, resource_meta: ResourceMeta, **kwargs: Any) -> None:
            return None

    connector = Replay()
    registry = ConnectorRegistry()
    registry.register(connector)
    async with serve_in_background(registry) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            stub = AsyncConnectorServiceStub(channel)
            for n, resource in enumerate(resources):
                connector.calls = [n]  # type: ignore[attr-defined]
                got = await stub.GetTask(pb.GetTaskRequest(
                    task_category=pb.TaskCategory(name="replay"), resource_meta=b"{}"), timeout=10)
                expected = pb.GetTaskResponse()
                try:
                    fill_resource(expected.resource, resource, "Replay.get")
                except ContractError:
                    pytest.fail("the message path failed")
                if n == 4:  # outputs that cannot be converted: FAILED, with a message saying why
                    assert got.resource.phase == TaskExecution.FAILED
                    assert "cannot be converted" in got.resource.message
                assert got == expected
