"""Shutdown edges: no open stream (health Watch, a stalled GetTaskLogs, reflection) holds
the drain, unary calls in flight finish, and a delete accepted before the signal finishes
(its job's processes gone) before the daemon stops."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, AsyncIterator

import grpc.aio
import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector.service_pb2_grpc import AsyncConnectorServiceStub
from flyteidl2.core.execution_pb2 import TaskExecution
from grpc_health.v1 import health_pb2, health_pb2_grpc

from connector_cli import AsyncConnector, Resource, ResourceMeta
from connector_cli.signing import unsigned_payload
from connector_cli.testing import make_template, registry_with, serve_in_background
from flyte_connector_shell import procfs
from flyte_connector_shell.connector import ShellMeta

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_an_open_watch_stream_does_not_hold_the_drain() -> None:
    async with serve_in_background(grace_period=20) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=30)
            await watch.read()
            started = time.monotonic()
            await asyncio.wait_for(daemon.server.stop(), 15)
            assert time.monotonic() - started < 5
            assert (await watch.read()).status == NOT_SERVING


def job_alive(meta: ShellMeta) -> bool:
    return bool(procfs.job_processes(meta.pid, meta.start_ticks, meta.boot_id,
                                     nonce=meta.nonce))


async def test_a_delete_accepted_before_shutdown_finishes_past_a_short_grace(
    tmp_path: Path,
) -> None:
    template = make_template("shell", custom={
        "script": "trap '' TERM; echo ready > \"$FLYTE_OUTPUT_DIR/ready\"; "
                  "while :; do sleep 0.1; done",
        "kill_grace_seconds": 3,
    })
    prefix = tmp_path / "out"
    meta = None
    try:
        async with serve_in_background(plugins=["shell"], grace_period=0.2) as daemon:
            raw = await daemon.client.create(template, str(prefix))
            meta = ShellMeta.decode(unsigned_payload(raw))
            deadline = time.monotonic() + 10
            while not (meta.output_dir / "ready").exists():
                assert time.monotonic() < deadline, "the job did not start"
                await asyncio.sleep(0.05)
            deleting = asyncio.create_task(daemon.client.delete(("shell", 0), raw))
            await asyncio.sleep(0.3)
            assert not deleting.done() and job_alive(meta)
            await daemon.server.stop()
            assert not job_alive(meta), "the daemon stopped with the delete unfinished"
            await asyncio.gather(deleting, return_exceptions=True)
    finally:
        if meta is not None:
            meta.terminate()


class StalledLogs(AsyncConnector):
    """`get_logs` yields one page, then waits for more forever (a follower that never ends);
    `get` takes half a second."""

    name = "Stalled"
    task_type_name = "stalled"
    metadata_type = ResourceMeta

    async def create(self, task_template: Any, output_prefix: str, inputs: Any = None,
                     **kwargs: Any) -> ResourceMeta:
        return ResourceMeta()

    async def get(self, resource_meta: ResourceMeta, **kwargs: Any) -> Resource:
        await asyncio.sleep(0.5)
        return Resource(phase=TaskExecution.SUCCEEDED, message="finished")

    async def delete(self, resource_meta: ResourceMeta, **kwargs: Any) -> None:
        return None

    async def get_logs(self, resource_meta: ResourceMeta, **kwargs: Any) -> AsyncIterator[Any]:
        yield pb.GetTaskLogsResponse(body=pb.GetTaskLogsResponseBody(results=["first"]))
        await asyncio.Event().wait()


async def test_open_streams_do_not_hold_the_drain_but_unary_calls_finish() -> None:
    """A stalled GetTaskLogs stream and an open reflection stream end when the drain starts
    (a client retries them elsewhere); a GetTask in flight still gets its answer."""
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async with serve_in_background(registry_with(StalledLogs()), grace_period=20) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            tasks = AsyncConnectorServiceStub(channel)
            category = pb.TaskCategory(name="stalled")
            logs = tasks.GetTaskLogs(pb.GetTaskLogsRequest(task_category=category,
                                                           resource_meta=b"{}"), timeout=30)
            await logs.read()
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                timeout=30)
            await reflection.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            await reflection.read()
            get = asyncio.ensure_future(tasks.GetTask(pb.GetTaskRequest(
                task_category=category, resource_meta=b"{}"), timeout=30))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            await asyncio.wait_for(daemon.server.stop(), 15)
            assert time.monotonic() - started < 3
            assert (await get).resource.message == "finished"
            for stream in (logs, reflection):
                with pytest.raises(grpc.aio.AioRpcError) as ended:
                    await stream.read()
                assert ended.value.code() is grpc.StatusCode.UNAVAILABLE
                assert "shutting down" in (ended.value.details() or "")
