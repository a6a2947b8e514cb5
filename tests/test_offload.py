"""GetTask answers over `--max-response-bytes` (default 4 MiB, grpc-go's receive limit):
outputs go to `<output_prefix>/outputs.pb` as a LiteralMap, the answer carries none; where
that cannot be done the task fails with one message naming the size and the limit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector.service_pb2_grpc import AsyncConnectorServiceStub
from flyteidl2.core.execution_pb2 import TaskExecution
from flyteidl2.core.literals_pb2 import LiteralMap

from connector_cli import AsyncConnector, Resource, ResourceMeta
from connector_cli.run.task_files import make_template
from connector_cli.sdk.registry import ConnectorRegistry
from connector_cli.testing import serve_in_background

LIMIT = 4 * 1024 * 1024
BLOB = "x" * (6 * 1024 * 1024)


@dataclass
class BigMeta(ResourceMeta):
    size: int


class Big(AsyncConnector):
    """Succeeds at once with `size` characters of output (and a small count)."""

    name = "Big"
    task_type_name = "big"
    metadata_type = BigMeta

    async def create(self, task_template: Any, output_prefix: str, inputs: Any = None,
                     task_execution_metadata: Any = None, **kwargs: Any) -> BigMeta:
        return BigMeta(size=len(BLOB))

    async def get(self, resource_meta: BigMeta, **kwargs: Any) -> Resource:
        return Resource(phase=TaskExecution.SUCCEEDED, message="done",
                        outputs={"blob": BLOB[: resource_meta.size], "count": 3})

    async def delete(self, resource_meta: BigMeta, **kwargs: Any) -> None:
        return None


async def get_over_the_wire(address: str, meta: bytes, prefix: str) -> pb.GetTaskResponse:
    """GetTask on a channel with grpc's default 4 MiB receive limit, as the backend has."""
    async with grpc.aio.insecure_channel(address) as channel:
        response: pb.GetTaskResponse = await AsyncConnectorServiceStub(channel).GetTask(
            pb.GetTaskRequest(task_category=pb.TaskCategory(name="big"), resource_meta=meta,
                              output_prefix=prefix), timeout=30)
    return response


async def test_six_mib_of_outputs_go_to_outputs_pb(registry: ConnectorRegistry,
                                                   tmp_path: Path) -> None:
    registry.register(Big())
    async with serve_in_background(registry) as daemon:
        meta = await daemon.client.create(make_template("big"), str(tmp_path))
        for prefix in (str(tmp_path / "plain"), (tmp_path / "uri").as_uri()):
            response = await get_over_the_wire(daemon.server.address, meta, prefix)
            assert response.ByteSize() < LIMIT
            assert response.resource.phase == TaskExecution.SUCCEEDED
            assert not response.resource.HasField("outputs")
            written = LiteralMap.FromString(
                (Path(prefix.removeprefix("file://")) / "outputs.pb").read_bytes())
            assert written.literals["blob"].scalar.primitive.string_value == BLOB
            assert written.literals["count"].scalar.primitive.integer == 3


async def test_small_answers_are_untouched_and_the_limit_is_an_option(
        registry: ConnectorRegistry, tmp_path: Path) -> None:
    registry.register(Big())
    async with serve_in_background(registry, max_response_bytes=2048) as daemon:
        small = await daemon.client.create(make_template("big"), str(tmp_path))
        big = small.replace(b'"size":%d' % len(BLOB), b'"size":4000')
        small = small.replace(b'"size":%d' % len(BLOB), b'"size":100')
        kept = await get_over_the_wire(daemon.server.address, small, str(tmp_path / "a"))
        moved = await get_over_the_wire(daemon.server.address, big, str(tmp_path / "b"))
    assert kept.resource.outputs.literals[0].name == "blob"
    assert not (tmp_path / "a" / "outputs.pb").exists()
    assert not moved.resource.HasField("outputs")
    assert (tmp_path / "b" / "outputs.pb").exists()


@pytest.mark.parametrize("prefix, reason", [
    ("", "no output_prefix"),
    ("nosuchscheme://bucket/run", "writing nosuchscheme://bucket/run/outputs.pb failed"),
])
async def test_where_outputs_cannot_be_written_the_task_fails_naming_size_and_limit(
        registry: ConnectorRegistry, tmp_path: Path, prefix: str, reason: str) -> None:
    registry.register(Big())
    async with serve_in_background(registry) as daemon:
        meta = await daemon.client.create(make_template("big"), str(tmp_path))
        response = await get_over_the_wire(daemon.server.address, meta, prefix)
    message = response.resource.message
    assert response.resource.phase == TaskExecution.FAILED
    assert f"over the {LIMIT}-byte limit" in message and reason in message
    assert "the connector's answer is 629" in message  # 6 MiB and a bit


async def test_flyte1_answers_at_the_limit_stay_within_it(registry: ConnectorRegistry,
                                                          tmp_path: Path) -> None:
    """A v1 answer is the v2 one the dispatcher fitted plus the deprecated `state`: at the
    edge those bytes must not carry it over the limit (the propeller's grpc-go would fail
    every GetTask); such an answer has its outputs moved to outputs.pb instead."""
    pytest.importorskip("flyteidl.service.agent_pb2", reason="needs the flyte1 extra")
    from flyteidl.admin import agent_pb2 as v1
    from flyteidl.service.agent_pb2_grpc import AsyncAgentServiceStub

    registry.register(Big())
    sizes: dict[int, tuple[int, bool]] = {}
    async with serve_in_background(registry, max_response_bytes=2048) as daemon:
        meta = await daemon.client.create(make_template("big"), str(tmp_path))
        async with grpc.aio.insecure_channel(daemon.server.address) as channel:
            stub = AsyncAgentServiceStub(channel)
            for size in range(1960, 2048):
                edge = meta.replace(b'"size":%d' % len(BLOB), b'"size":%d' % size)
                response = await stub.GetTask(v1.GetTaskRequest(
                    task_category=v1.TaskCategory(name="big"), resource_meta=edge,
                    output_prefix=str(tmp_path / str(size))), timeout=10)
                assert response.resource.phase == TaskExecution.SUCCEEDED, size
                sizes[size] = (response.ByteSize(), response.resource.HasField("outputs"))
    assert max(length for length, _ in sizes.values()) <= 2048, sizes
    assert sizes[1960][1] and not sizes[2047][1]  # inline below the edge, moved above
