"""The connector services over the wire: lifecycle, status codes, secrets, logs, concurrency.

Every test runs a real daemon on 127.0.0.1:0 and calls it with the flyteidl2 generated
stubs, as the Flyte backend does.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, AsyncIterator

import grpc
import grpc.aio
import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector.service_pb2_grpc import (
    AsyncConnectorServiceStub,
    ConnectorMetadataServiceStub,
)
from flyteidl2.core.execution_pb2 import TaskExecution
from flyteidl2.core.interface_pb2 import TypedInterface, Variable, VariableEntry, VariableMap
from flyteidl2.core.security_pb2 import Connection
from flyteidl2.core.tasks_pb2 import TaskTemplate
from flyteidl2.task.common_pb2 import Inputs, NamedLiteral
from google.protobuf.struct_pb2 import Struct

from connector_cli.literals import infer_literal_type, literal_to_python, python_to_literal
from connector_cli.sdk.registry import ConnectorRegistry
from connector_cli.testing import RunningDaemon, serve_in_background
from tests.fixtures.connectors import daemon_connectors as dc
from tests.helpers.daemon_process import scrape

SECRET = "s3cr3t-VALUE-42"
Code = grpc.StatusCode


class Wire:
    """A daemon plus raw generated stubs on their own channel."""

    def __init__(self, daemon: RunningDaemon, channel: grpc.aio.Channel) -> None:
        self.daemon = daemon
        self.tasks = AsyncConnectorServiceStub(channel)
        self.meta = ConnectorMetadataServiceStub(channel)

    async def code_of(self, call: Any) -> tuple[grpc.StatusCode, str]:
        try:
            await call
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
        return Code.OK, ""


@pytest.fixture
def connectors() -> dict[str, Any]:
    return {cls.task_type_name: cls() for cls in dc.ALL}


@pytest.fixture
async def wire(connectors: dict[str, Any]) -> AsyncIterator[Wire]:
    registry = ConnectorRegistry()
    for connector in connectors.values():
        registry.register(connector)
    async with serve_in_background(registry, workers=64) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            yield Wire(daemon, channel)


def category(name: str, version: int = 0) -> pb.TaskCategory:
    return pb.TaskCategory(name=name, version=version)


def interface(**example: Any) -> TypedInterface:
    return TypedInterface(inputs=VariableMap(variables=[
        VariableEntry(key=k, value=Variable(type=infer_literal_type(v))) for k, v in example.items()
    ]))


def inputs(**values: Any) -> Inputs:
    return Inputs(literals=[NamedLiteral(name=k, value=python_to_literal(v)) for k, v in values.items()])


def template(task_type: str, version: int = 0, **custom: str) -> TaskTemplate:
    struct = Struct()
    struct.update(custom)
    return TaskTemplate(type=task_type, task_type_version=version, custom=struct)


async def test_create_get_delete_lifecycle(wire: Wire, connectors: dict[str, Any]) -> None:
    values = {"name": "Ada", "count": 3, "ratio": 0.5}
    tmpl = template("echo")
    tmpl.interface.CopyFrom(interface(**values))
    created = await wire.tasks.CreateTask(pb.CreateTaskRequest(
        template=tmpl, inputs=inputs(**values), output_prefix="s3://bucket/out",
        task_execution_metadata=pb.TaskExecutionMetadata(namespace="ns"),
        connection=Connection(secrets={"api_key": SECRET}, configs={"region": "eu"}),
    ), timeout=10)
    meta = created.resource_meta
    got = await wire.tasks.GetTask(pb.GetTaskRequest(
        task_category=category("echo"), resource_meta=meta, output_prefix="s3://bucket/out",
        connection=Connection(secrets={"api_key": SECRET}),
    ), timeout=10)
    resource = got.resource
    assert resource.phase == TaskExecution.SUCCEEDED
    assert resource.message == "echoed 3 inputs"
    assert resource.log_links[0].uri == "https://example.com/echo"
    assert [v.string_value for v in resource.custom_info.fields["inputs"].list_value.values] == ["count", "name", "ratio"]
    outputs = {n.name: literal_to_python(n.value) for n in resource.outputs.literals}
    assert outputs == values
    await wire.tasks.DeleteTask(pb.DeleteTaskRequest(task_category=category("echo"), resource_meta=meta), timeout=10)
    echo = connectors["echo"]
    assert [name for name, _ in echo.calls] == ["create", "get", "delete"]
    create_kwargs = echo.calls[0][1]
    assert create_kwargs["api_key"] == SECRET and create_kwargs["region"] == "eu"
    assert create_kwargs["task_execution_metadata"].namespace == "ns"
    assert create_kwargs["output_prefix"] == "s3://bucket/out"
    assert echo.calls[1][1] == {"api_key": SECRET} and echo.calls[2][1] == {}


async def test_create_without_inputs_and_a_failed_phase(wire: Wire) -> None:
    created = await wire.tasks.CreateTask(pb.CreateTaskRequest(template=template("echo", phase="failed")), timeout=10)
    got = await wire.tasks.GetTask(pb.GetTaskRequest(task_category=category("echo"), resource_meta=created.resource_meta), timeout=10)
    assert got.resource.phase == TaskExecution.FAILED
    assert not got.resource.HasField("outputs")


async def test_metadata_service(wire: Wire) -> None:
    listed = await wire.meta.ListConnectors(pb.ListConnectorsRequest(), timeout=10)
    assert [c.name for c in listed.connectors] == ["Echo", "Failing", "Blocking", "Slow", "Broken"]
    assert listed.connectors[0].supported_task_categories[0].name == "echo"
    one = await wire.meta.GetConnector(pb.GetConnectorRequest(name="Slow"), timeout=10)
    assert one.connector.supported_task_categories[0].name == "slow"
    code, detail = await wire.code_of(wire.meta.GetConnector(pb.GetConnectorRequest(name="Slo"), timeout=10))
    assert code == Code.NOT_FOUND and "did you mean 'Slow'" in detail


async def test_status_codes(wire: Wire) -> None:
    meta = dc.Empty().encode()
    cases = [
        (wire.tasks.GetTask(pb.GetTaskRequest(task_category=category("nope"), resource_meta=meta)), Code.NOT_FOUND, "no connector for task type 'nope'"),
        (wire.tasks.CreateTask(pb.CreateTaskRequest(template=template("echo", version=7))), Code.NOT_FOUND, "served versions of 'echo': 0"),
        (wire.tasks.GetTask(pb.GetTaskRequest(task_category=category("echo"), resource_meta=b"\x00garbage")), Code.INVALID_ARGUMENT, "resource_meta is not EchoMeta data"),
        (wire.tasks.DeleteTask(pb.DeleteTaskRequest(task_category=category("slow"), resource_meta=b'{"seconds": "x"}')), Code.INVALID_ARGUMENT, "field 'seconds': expected a number"),
        (wire.tasks.GetTaskLogs(pb.GetTaskLogsRequest(task_category=category("blocking"), resource_meta=meta)), Code.UNIMPLEMENTED, "does not implement get_logs"),
        (wire.tasks.GetTaskMetrics(pb.GetTaskMetricsRequest(task_category=category("blocking"), resource_meta=meta)), Code.UNIMPLEMENTED, "does not implement get_metrics"),
        (wire.tasks.DeleteTask(pb.DeleteTaskRequest(task_category=category("boom"), resource_meta=meta)), Code.UNIMPLEMENTED, "cannot cancel jobs"),
        (wire.tasks.GetTask(pb.GetTaskRequest(task_category=category("boom"), resource_meta=meta)), Code.INTERNAL, "get for task type 'boom' failed: ValueError: lookup with None failed"),
        (wire.tasks.CreateTask(pb.CreateTaskRequest(template=template("broken"))), Code.INTERNAL, "Broken.create returned str; return a ResourceMeta"),
        (wire.tasks.GetTask(pb.GetTaskRequest(task_category=category("broken"), resource_meta=meta)), Code.INTERNAL, "returned phase UNDEFINED"),
        (wire.tasks.GetTaskLogs(pb.GetTaskLogsRequest(task_category=category("broken"), resource_meta=meta)), Code.INTERNAL, "produced str"),
    ]
    for call, code, text in cases:
        if isinstance(call, grpc.aio.UnaryStreamCall):
            call = _drain(call)
        got_code, detail = await wire.code_of(call)
        assert (got_code, text in detail) == (code, True), (code, text, got_code, detail)


async def _drain(call: Any) -> None:
    async for _ in call:
        pass


async def test_bad_inputs_and_connections_are_invalid_argument(wire: Wire) -> None:
    tmpl = template("echo")
    tmpl.interface.CopyFrom(interface(count=1))
    bad_input = pb.CreateTaskRequest(template=tmpl, inputs=inputs(count="three"))
    code, detail = await wire.code_of(wire.tasks.CreateTask(bad_input))
    assert code == Code.INVALID_ARGUMENT and "count" in detail
    clash = Connection(secrets={"token": SECRET}, configs={"token": "plain"})
    code, detail = await wire.code_of(wire.tasks.CreateTask(pb.CreateTaskRequest(template=template("echo"), connection=clash)))
    assert code == Code.INVALID_ARGUMENT and "'token' is both a secret and a config" in detail
    assert SECRET not in detail
    reserved = Connection(secrets={"resource_meta": SECRET})
    request = pb.GetTaskRequest(task_category=category("echo"), resource_meta=dc.EchoMeta().encode(), connection=reserved)
    code, detail = await wire.code_of(wire.tasks.GetTask(request))
    assert code == Code.INVALID_ARGUMENT and "connection key 'resource_meta'" in detail and SECRET not in detail


class RawInputs(dc.EchoConnector):
    """Takes CreateTask's inputs as the wire message; remembers what it got."""

    name = "Raw"
    task_type_name = "raw"
    raw_inputs = True

    def __init__(self) -> None:
        super().__init__()
        self.got: list[Any] = []

    async def create(self, task_template: Any, output_prefix: str, inputs: Any = None,
                     **kwargs: Any) -> dc.EchoMeta:
        self.got.append(inputs)
        return dc.EchoMeta()


async def test_a_raw_inputs_connector_gets_the_wire_inputs_unconverted() -> None:
    raw = RawInputs()
    registry = ConnectorRegistry()
    registry.register(raw)
    tmpl = template("raw")
    tmpl.interface.CopyFrom(interface(count=1))
    sent = inputs(count="three", extra=[1, 2])  # no conversion, so no type check either
    async with serve_in_background(registry, metrics_port=0) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            stub = AsyncConnectorServiceStub(channel)
            await stub.CreateTask(pb.CreateTaskRequest(template=tmpl, inputs=sent), timeout=10)
            await stub.CreateTask(pb.CreateTaskRequest(template=tmpl), timeout=10)
        assert daemon.metrics_url
        text = await asyncio.to_thread(scrape, daemon.metrics_url)
    assert isinstance(raw.got[0], Inputs) and raw.got[0] == sent
    assert raw.got[1] is None
    size = sent.ByteSize()  # the size metric still counts what was sent
    assert f'flyte_connector_input_literal_bytes_sum{{task_type="raw"}} {size:.1f}' in text


async def test_outputs_that_cannot_be_converted_fail_the_task_not_the_rpc(wire: Wire) -> None:
    request = pb.GetTaskRequest(task_category=category("broken"), resource_meta=dc.Empty(seconds=1).encode())
    got = await wire.tasks.GetTask(request, timeout=10)
    assert got.resource.phase == TaskExecution.FAILED
    assert "output 'x'" in got.resource.message


async def test_secrets_are_masked_in_details_and_logs(wire: Wire, caplog: pytest.LogCaptureFixture) -> None:
    connection = Connection(secrets={"api_key": SECRET, "short": "ab"}, configs={"region": "eu"})
    caplog.set_level(logging.DEBUG)
    code, detail = await wire.code_of(wire.tasks.CreateTask(pb.CreateTaskRequest(template=template("boom"), connection=connection)))
    assert code == Code.INTERNAL
    assert detail == "create for task type 'boom' failed: RuntimeError: login refused for key ****\nsecond line"
    request = pb.GetTaskRequest(task_category=category("boom"), resource_meta=dc.Empty().encode(), connection=connection)
    code, detail = await wire.code_of(wire.tasks.GetTask(request))
    assert code == Code.INTERNAL and detail.endswith("lookup with **** failed")
    assert "Traceback" in caplog.text and "KeyError" in caplog.text and "second line" in caplog.text
    assert SECRET not in caplog.text and "****" in caplog.text


async def test_logs_stream_pages_with_tokens(wire: Wire) -> None:
    meta = dc.EchoMeta().encode()
    lines, token, pages = [], "", 0
    while True:
        request = pb.GetTaskLogsRequest(task_category=category("echo"), resource_meta=meta, token=token, lines=2)
        messages = [m async for m in wire.tasks.GetTaskLogs(request, timeout=10)]
        pages += 1
        bodies = [m.body for m in messages if m.HasField("body")]
        headers = [m.header for m in messages if m.HasField("header")]
        assert len(bodies) == 1 and len(headers) <= 1
        lines += [line.message for line in bodies[0].lines]
        if not headers:
            break
        token = headers[0].token
    assert lines == dc.LOG_LINES and pages == 3
    broken = wire.tasks.GetTaskLogs(pb.GetTaskLogsRequest(task_category=category("boom"), resource_meta=meta), timeout=10)
    assert (await broken.read()).body.results == ["first page"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await broken.read()
    assert info.value.code() == Code.INTERNAL and "RuntimeError: log stream broke" in info.value.details()
    single = pb.GetTaskLogsRequest(task_category=category("slow"), resource_meta=dc.Empty(seconds=2).encode())
    messages = [m async for m in wire.tasks.GetTaskLogs(single, timeout=10)]
    assert [m.body.results for m in messages] == [["slept 2.0"]]


async def test_task_metrics(wire: Wire) -> None:
    request = pb.GetTaskMetricsRequest(task_category=category("echo"), resource_meta=dc.EchoMeta().encode(), queries=["cpu", "mem"])
    response = await wire.tasks.GetTaskMetrics(request, timeout=10)
    assert [r.metric for r in response.results] == ["cpu", "mem"]


async def test_deadline_cancels_the_connector_call(wire: Wire) -> None:
    dc.SlowConnector.cancelled.clear()
    request = pb.GetTaskRequest(task_category=category("slow"), resource_meta=dc.Empty(seconds=30).encode())
    code, _ = await wire.code_of(wire.tasks.GetTask(request, timeout=0.3))
    assert code == Code.DEADLINE_EXCEEDED
    for _ in range(100):
        if dc.SlowConnector.cancelled:
            break
        await asyncio.sleep(0.02)
    assert dc.SlowConnector.cancelled == [30.0]
    call = wire.tasks.GetTask(request, timeout=10)
    await asyncio.sleep(0.2)
    call.cancel()
    for _ in range(100):
        if len(dc.SlowConnector.cancelled) == 2:
            break
        await asyncio.sleep(0.02)
    assert len(dc.SlowConnector.cancelled) == 2
    blocking = pb.GetTaskRequest(task_category=category("blocking"), resource_meta=dc.Empty(seconds=2).encode())
    started = time.perf_counter()
    code, _ = await wire.code_of(wire.tasks.GetTask(blocking, timeout=0.3))
    assert code == Code.DEADLINE_EXCEEDED and time.perf_counter() - started < 1.5
    for _ in range(100):
        if wire.daemon.server.in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert wire.daemon.server.in_flight == 0


async def test_blocking_connector_runs_on_the_worker_pool(wire: Wire) -> None:
    meta = dc.Empty(seconds=0.1).encode()
    request = pb.GetTaskRequest(task_category=category("blocking"), resource_meta=meta)
    started = time.perf_counter()
    batch = asyncio.gather(*(wire.tasks.GetTask(request, timeout=10) for _ in range(64)))
    await asyncio.sleep(0.03)
    listed_at = time.perf_counter()
    await wire.meta.ListConnectors(pb.ListConnectorsRequest(), timeout=10)
    list_latency = time.perf_counter() - listed_at
    results = await batch
    elapsed = time.perf_counter() - started
    assert all(r.resource.phase == TaskExecution.RUNNING for r in results)
    assert elapsed < 3.0, elapsed
    assert list_latency < 0.5, list_latency
    assert len(dc.BlockingConnector.threads) > 1


async def test_garbage_requests_never_answer_unknown_or_wedge(wire: Wire) -> None:
    rng = random.Random(7)
    names = ["echo", "boom", "blocking", "slow", "broken", "", "\u00e9cho", "x" * 300]
    allowed = {Code.OK, Code.NOT_FOUND, Code.INVALID_ARGUMENT, Code.UNIMPLEMENTED, Code.INTERNAL}
    calls = []
    for _ in range(60):
        meta = rng.choice([rng.randbytes(rng.randrange(0, 40)), b"{}", b'{"seconds": 0}', b"null", b"[1]"])
        cat = category(rng.choice(names), rng.choice([0, 0, 1, -1]))
        calls.append(wire.tasks.GetTask(pb.GetTaskRequest(task_category=cat, resource_meta=meta), timeout=10))
        calls.append(wire.tasks.DeleteTask(pb.DeleteTaskRequest(task_category=cat, resource_meta=meta), timeout=10))
    codes = {code for code, _ in await asyncio.gather(*(wire.code_of(c) for c in calls))}
    assert codes <= allowed and Code.UNKNOWN not in codes, codes
    listed = await wire.meta.ListConnectors(pb.ListConnectorsRequest(), timeout=10)
    assert len(listed.connectors) == 5


async def test_two_daemons_share_nothing_but_resource_meta() -> None:
    first, second = dc.EchoConnector(), dc.EchoConnector()
    registries = [ConnectorRegistry(), ConnectorRegistry()]
    registries[0].register(first)
    registries[1].register(second)
    async with serve_in_background(registries[0]) as a, serve_in_background(registries[1]) as b:
        tmpl = template("echo")
        tmpl.interface.CopyFrom(interface(n=1))
        meta = await a.client.create(tmpl, "s3://out", inputs(n=5))
        resource = await b.client.get(("echo", 0), meta)
        assert resource.phase == TaskExecution.SUCCEEDED
        assert literal_to_python(resource.outputs.literals[0].value) == 5
        await b.client.delete(("echo", 0), meta)
    assert [c for c, _ in first.calls] == ["create"]
    assert [c for c, _ in second.calls] == ["get", "delete"]
