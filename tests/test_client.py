"""connector_cli.client: ready request messages sent to a real daemon, and the endpoint check."""

from __future__ import annotations

import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.core.tasks_pb2 import TaskTemplate

from connector_cli.client import ConnectorClient, check_endpoint
from connector_cli.errors import ConnectorNotFound, UsageError
from connector_cli.run.targets import DaemonTarget
from connector_cli.sdk.registry import category_message
from connector_cli.testing import registry_with, serve_in_background
from tests.fixtures.connectors import daemon_connectors as dc


async def test_call_and_stream_logs_carry_ready_messages() -> None:
    async with serve_in_background(registry_with(dc.EchoConnector())) as daemon:
        created = await daemon.client.call("create", pb.CreateTaskRequest(
            template=TaskTemplate(type="echo"), output_prefix="s3://out"))
        echo = category_message(("echo", 0))
        got = await daemon.client.call("get", pb.GetTaskRequest(
            task_category=echo, resource_meta=created.resource_meta))
        assert got.resource.message == "echoed 0 inputs"
        pages = [m async for m in daemon.client.stream_logs(pb.GetTaskLogsRequest(
            task_category=echo, resource_meta=created.resource_meta, lines=2))]
        assert [m.WhichOneof("part") for m in pages] == ["body", "header"]
        assert pages[1].header.token == "2"
        with pytest.raises(ConnectorNotFound, match="no connector for task type 'nope'"):
            await daemon.client.call("delete", pb.DeleteTaskRequest(
                task_category=category_message(("nope", 0)), resource_meta=b"{}"))


async def test_a_daemon_target_leaves_a_borrowed_client_open() -> None:
    async with serve_in_background(registry_with(dc.EchoConnector())) as daemon:
        target = DaemonTarget(daemon.address, client=daemon.client)
        await target.check(("echo", 0))
        await target.close()
        assert [c.name for c in await daemon.client.list_connectors()] == ["Echo"]


@pytest.mark.parametrize("endpoint", ["", "localhost", "8000"])
async def test_an_endpoint_must_be_host_and_port(endpoint: str) -> None:
    with pytest.raises(UsageError, match="is not HOST:PORT"):
        check_endpoint(endpoint)
    with pytest.raises(UsageError, match="is not HOST:PORT"):
        ConnectorClient(endpoint)
    with pytest.raises(UsageError, match="is not HOST:PORT"):
        DaemonTarget(endpoint)


def test_client_and_runner_build_the_same_requests() -> None:
    """One builder: the in-process runner and the daemon client send equal messages."""
    import inspect

    from connector_cli import client
    from connector_cli.run import targets

    for module in (client, targets):
        source = inspect.getsource(module)
        for rpc in ("CreateTask", "GetTask", "DeleteTask", "GetTaskMetrics", "GetTaskLogs"):
            assert f"{rpc}Request(" not in source, (module.__name__, rpc)
        assert "__name__]" not in source
