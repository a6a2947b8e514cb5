"""connector_cli.dispatch on its own: request messages -> the connector -> response messages,
with no gRPC (the servicers and the in-process runner both sit on this)."""

from __future__ import annotations

from typing import Any

import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.core.execution_pb2 import TaskExecution
from flyteidl2.core.security_pb2 import Connection
from flyteidl2.core.tasks_pb2 import TaskTemplate
from google.protobuf.struct_pb2 import Struct

from connector_cli.connection_args import connection_kwargs
from connector_cli.dispatch import UNKNOWN_TASK_TYPE, Dispatcher, Scope
from connector_cli.errors import ConnectorNotFound, UsageError
from connector_cli.masking import current
from connector_cli.responses import ContractError, fill_resource
from connector_cli.sdk.connector import Resource
from connector_cli.sdk.registry import ConnectorRegistry
from connector_cli.task_requests import (
    create_request,
    delete_request,
    get_request,
    logs_request,
    metrics_request,
)
from tests.fixtures.connectors import daemon_connectors as dc

ECHO = ("echo", 0)


def echo_template(phase: str = "succeeded") -> TaskTemplate:
    custom = Struct()
    custom.update({"phase": phase})
    return TaskTemplate(type="echo", custom=custom)


@pytest.fixture
def echo(registry: ConnectorRegistry) -> tuple[Dispatcher, dc.EchoConnector]:
    connector = dc.EchoConnector()
    registry.register(connector)
    return Dispatcher(registry), connector


async def test_create_get_delete_on_messages(echo: tuple[Dispatcher, dc.EchoConnector]) -> None:
    dispatch, connector = echo
    scope = Scope()
    created = await dispatch.create(create_request(echo_template(), "file:///out"), scope)
    assert scope.label == "echo"
    got = await dispatch.get(get_request(ECHO, created.resource_meta), Scope())
    assert got.resource.phase == TaskExecution.SUCCEEDED
    assert got.resource.message == "echoed 0 inputs"
    assert [link.name for link in got.resource.log_links] == ["echo"]
    await dispatch.delete(delete_request(ECHO, created.resource_meta), Scope())
    assert [name for name, _ in connector.calls] == ["create", "get", "delete"]
    assert connector.calls[0][1] == {"output_prefix": "file:///out", "task_execution_metadata": None}


async def test_an_unknown_task_type_is_not_found_and_keeps_the_unknown_label(
        echo: tuple[Dispatcher, dc.EchoConnector]) -> None:
    dispatch, _ = echo
    scope = Scope()
    with pytest.raises(ConnectorNotFound, match="no connector for task type 'ecko'.*'echo'"):
        await dispatch.get(get_request(("ecko", 0), b"{}"), scope)
    assert scope.label == UNKNOWN_TASK_TYPE  # a caller's text never becomes a metric label


async def test_routes_follow_the_registry(echo: tuple[Dispatcher, dc.EchoConnector],
                                          registry: ConnectorRegistry) -> None:
    dispatch, first = echo
    meta = (await dispatch.create(create_request(echo_template(), "x"), Scope())).resource_meta
    second = dc.EchoConnector()
    registry.register(second, override=True)
    await dispatch.get(get_request(ECHO, meta), Scope())
    assert [n for n, _ in first.calls] == ["create"] and [n for n, _ in second.calls] == ["get"]


async def test_a_garbage_meta_is_a_usage_error(echo: tuple[Dispatcher, dc.EchoConnector]) -> None:
    dispatch, connector = echo
    with pytest.raises(UsageError, match="EchoMeta"):
        await dispatch.get(get_request(ECHO, b"not json"), Scope())
    assert connector.calls == []


async def test_connection_becomes_keywords_and_masks_the_call(
        echo: tuple[Dispatcher, dc.EchoConnector]) -> None:
    dispatch, connector = echo
    request = create_request(echo_template(), "x", connection=Connection(
        secrets={"token": "s3cr3t"}, configs={"region": "eu"}))
    scope = Scope()
    await dispatch.create(request, scope)
    assert connector.calls[0][1] == {"output_prefix": "x", "task_execution_metadata": None,
                                     "token": "s3cr3t", "region": "eu"}
    assert dict(scope.secrets) == {"token": "s3cr3t"}
    masker = current()
    assert masker is not None and "s3cr3t" not in masker.text("the s3cr3t")


def test_a_connection_key_may_not_replace_an_argument() -> None:
    request = get_request(ECHO, b"{}", connection=Connection(configs={"resource_meta": "x"}))
    with pytest.raises(UsageError, match="'resource_meta' clashes .* get method"):
        connection_kwargs(request, "get")
    assert connection_kwargs(get_request(ECHO, b"{}"), "get") == ({}, {})


async def test_log_pages_and_metrics_come_back_as_messages(
        echo: tuple[Dispatcher, dc.EchoConnector]) -> None:
    dispatch, _ = echo
    meta = (await dispatch.create(create_request(echo_template(), "x"), Scope())).resource_meta
    pages = [m async for m in dispatch.get_logs(logs_request(ECHO, meta, lines=2), Scope())]
    assert [m.WhichOneof("part") for m in pages] == ["body", "header"]
    assert pages[1].header.token == "2"
    metrics = await dispatch.get_metrics(metrics_request(ECHO, meta, queries=["cpu"]), Scope())
    assert [r.metric for r in metrics.results] == ["cpu"]


async def test_optional_methods_a_connector_lacks_are_not_implemented(
        registry: ConnectorRegistry) -> None:
    registry.register(dc.FailingConnector())
    dispatch = Dispatcher(registry)
    category = (dc.FailingConnector.task_type_name, 0)
    with pytest.raises(NotImplementedError, match="does not implement get_metrics"):
        await dispatch.get_metrics(metrics_request(category, b"{}"), Scope())


@pytest.mark.parametrize("resource, message", [
    (pb.Resource(), "phase UNDEFINED"),
    (Resource(phase=TaskExecution.RUNNING, custom_info={"x": object()}), "not JSON data"),
])
def test_fill_resource_names_a_broken_contract(resource: Any, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        fill_resource(pb.Resource(), resource, "echo.get")


def test_outputs_that_cannot_be_converted_fail_the_task_not_the_call() -> None:
    out = pb.Resource()
    fill_resource(out, Resource(phase=TaskExecution.SUCCEEDED, outputs={"x": object()}),
                  "echo.get")
    assert out.phase == TaskExecution.FAILED and not out.HasField("outputs")
    assert out.message.startswith("the connector's outputs cannot be converted")
