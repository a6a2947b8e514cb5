"""`own_loop = True`: a connector's async methods run on an event loop of its own, in a
thread of its own, so blocking inside `async def` delays only that connector."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator

from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector.service_pb2_grpc import AsyncConnectorServiceStub
from flyteidl2.core.execution_pb2 import TaskExecution
from flyteidl2.logs.dataplane.payload_pb2 import LogLine

from connector_cli import AsyncConnector, Resource, ResourceMeta
from connector_cli.sdk.connector import call_method
from connector_cli.sdk.registry import ConnectorRegistry
from connector_cli.testing import serve_in_background


@dataclass
class Nap(ResourceMeta):
    seconds: float = 0.0


class Napper(AsyncConnector):
    task_type_name = "napper"
    metadata_type = Nap
    own_loop = True

    def __init__(self) -> None:
        self.loops: set[int] = set()
        self.threads: set[str] = set()

    def _seen(self) -> None:
        self.loops.add(id(asyncio.get_running_loop()))
        self.threads.add(threading.current_thread().name)

    async def create(self, task_template: Any, output_prefix: str, inputs: Any = None,
                     task_execution_metadata: Any = None, **kwargs: Any) -> Nap:
        self._seen()
        return Nap(seconds=0.4)

    async def get(self, resource_meta: Nap, **kwargs: Any) -> Resource:
        self._seen()
        time.sleep(resource_meta.seconds)
        return Resource(phase=TaskExecution.SUCCEEDED)

    async def delete(self, resource_meta: Nap, **kwargs: Any) -> None:
        self._seen()

    async def get_logs(self, resource_meta: Nap, **kwargs: Any) -> AsyncIterator[Any]:
        for i in range(3):
            self._seen()
            yield pb.GetTaskLogsResponse(body=pb.GetTaskLogsResponseBody(
                lines=[LogLine(message=f"page {i}")]))


async def test_every_call_runs_on_the_connectors_own_loop_and_thread() -> None:
    napper = Napper()
    meta = await call_method(napper, "create", None, "/tmp/out")
    await call_method(napper, "get", Nap(seconds=0))
    pages = [p async for p in await call_method(napper, "get_logs", meta)]
    await call_method(napper, "delete", meta)
    assert [p.body.lines[0].message for p in pages] == ["page 0", "page 1", "page 2"]
    assert len(napper.loops) == 1 and id(asyncio.get_running_loop()) not in napper.loops
    assert len(napper.threads) == 1
    assert next(iter(napper.threads)).startswith("connector-loop-napper")


async def test_a_blocking_get_leaves_the_daemon_answering() -> None:
    registry = ConnectorRegistry()
    registry.register(Napper())
    async with serve_in_background(registry) as daemon:
        request = pb.GetTaskRequest(task_category=pb.TaskCategory(name="napper"),
                                    resource_meta=Nap(seconds=0.4).encode())
        stub = AsyncConnectorServiceStub(daemon.client.channel)
        calls = [asyncio.ensure_future(stub.GetTask(request, timeout=30)) for _ in range(4)]
        await asyncio.sleep(0.1)
        started = time.perf_counter()
        await daemon.client.list_connectors()
        latency = time.perf_counter() - started
        results = await asyncio.gather(*calls)
    assert latency < 0.3, latency
    assert all(r.resource.phase == TaskExecution.SUCCEEDED for r in results)
