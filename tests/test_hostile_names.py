"""Issue 28, item 1: a long task type or connector name must not freeze the daemon.

The registry used to fuzzy-match the caller's text (difflib) on the event loop: 15 MB
names from 4 clients failed every health probe for 30 s and took RSS to 1.6 GiB.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import grpc.aio
import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.core.tasks_pb2 import TaskTemplate

from connector_cli.errors import ConnectorNotFound, UsageError
from connector_cli.sdk.registry import MAX_NAME, ConnectorRegistry
from tests.fixtures.connectors import daemon_connectors as dc
from tests.helpers.daemon_process import Daemon
from tests.helpers.pressure import figure, health_while, peak_rss_mib
from tests.helpers.raw_grpc import raw_call

pytestmark = pytest.mark.timeout(120)

METADATA = "/flyteidl2.connector.ConnectorMetadataService/GetConnector"


def registry() -> ConnectorRegistry:
    reg = ConnectorRegistry()
    reg.register(dc.EchoConnector())
    return reg


def test_a_long_name_is_refused_before_any_matching() -> None:
    reg = registry()
    started = time.perf_counter()
    with pytest.raises(UsageError, match=f"at most {MAX_NAME}"):
        reg.get_connector("e" * 5_000_000)
    with pytest.raises(UsageError, match=f"at most {MAX_NAME}"):
        reg.get_connector_metadata("x" * 5_000_000)
    assert time.perf_counter() - started < 0.5


def test_a_name_within_the_limit_still_gets_a_suggestion_cheaply() -> None:
    reg = registry()
    with pytest.raises(ConnectorNotFound, match="did you mean 'echo'"):
        reg.get_connector("ecko")
    started = time.perf_counter()
    with pytest.raises(ConnectorNotFound) as caught:
        reg.get_connector("q" * MAX_NAME)
    assert time.perf_counter() - started < 0.1
    assert len(str(caught.value)) < 2 * MAX_NAME + 200


def _bodies(size: int) -> list[tuple[str, bytes]]:
    name = "z" * size
    create = pb.CreateTaskRequest(template=TaskTemplate(type=name)).SerializeToString()
    get = pb.GetTaskRequest(task_category=pb.TaskCategory(name=name)).SerializeToString()
    meta = pb.GetConnectorRequest(name=name).SerializeToString()
    return [("CreateTask", create), ("GetTask", get), ("GetConnector", meta)]


async def _call(address: str, method: str, body: bytes) -> tuple[grpc.StatusCode, str]:
    if method == "GetConnector":
        async with grpc.aio.insecure_channel(address) as channel:
            try:
                await channel.unary_unary(METADATA)(body, timeout=30)
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details() or ""
            return grpc.StatusCode.OK, ""
    return await raw_call(address, method, body, timeout=30)  # type: ignore[no-any-return]


@pytest.mark.parametrize("size,clients", [(15_000_000, 4), ((1 << 20) - 64, 16)])
async def test_long_names_from_many_clients_leave_health_answering(size: int,
                                                                    clients: int) -> None:
    daemon = Daemon()
    address = daemon.wait_ready()
    try:
        bodies = _bodies(size)

        async def load() -> list[tuple[grpc.StatusCode, str]]:
            calls = [_call(address, *bodies[i % len(bodies)]) for i in range(clients)]
            return await asyncio.gather(*calls)

        slowest, results = await health_while(address, load)
        peak = peak_rss_mib(daemon.proc.pid)
    finally:
        daemon.proc.terminate()
        daemon.finish()
    figure(f"{clients} x {size} B names: slowest health {slowest:.3f}s, peak RSS {peak:.0f} MiB")
    for code, details in results:  # type: ignore[union-attr]
        assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED), \
            (code, details[:200])
        assert len(details) < 500
    assert slowest < 1.0, f"health waited {slowest:.2f}s"
    assert peak < 512, f"peak RSS {peak:.0f} MiB"
