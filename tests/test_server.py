"""The daemon's lifecycle: health, reflection, metrics, TLS/mTLS, start-up errors, drain.

In-process tests run a real daemon on 127.0.0.1:0; signals, exit codes and the CLI are
tested on `flyte-connector serve` subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import AsyncIterator

import grpc
import grpc.aio
import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector.service_pb2_grpc import (
    AsyncConnectorServiceStub,
    ConnectorMetadataServiceStub,
)
from flyteidl2.core.execution_pb2 import TaskExecution
from flyteidl2.core.tasks_pb2 import TaskTemplate
from flyteidl2.task.common_pb2 import Inputs, NamedLiteral
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from connector_cli.client import ClientTLS
from connector_cli.config import ServerConfig
from connector_cli.daemon.metrics import exported_series
from connector_cli.daemon.server import ConnectorServer
from connector_cli.daemon.servicers import OPERATIONS
from connector_cli.errors import ConnectorNotFound, RemoteError, StartupError, UsageError
from connector_cli.literals import python_to_literal
from connector_cli.sdk.registry import ConnectorRegistry
from connector_cli.testing import serve_in_background
from tests.conftest import REPO, cli_env
from tests.fixtures.connectors import daemon_connectors as dc
from tests.helpers.daemon_process import (
    FIXTURES,
    Daemon,
    run_cli,
    scrape,
    slow_get,
    wait_in_flight,
)
from tests.helpers.pki import make_pki

SERVICES = ["flyteidl2.connector.AsyncConnectorService", "flyteidl2.connector.ConnectorMetadataService"]
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def fresh_registry() -> ConnectorRegistry:
    registry = ConnectorRegistry()
    for cls in dc.ALL:
        registry.register(cls())
    return registry


async def test_health_serving_then_not_serving_while_draining() -> None:
    async with serve_in_background(fresh_registry(), grace_period=5) as daemon:
        channel = grpc.aio.insecure_channel(daemon.address)
        health = health_pb2_grpc.HealthStub(channel)
        for name in ["", *SERVICES, "grpc.health.v1.Health"]:  # the last as on c0
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == SERVING, name
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert (await watch.read()).status == SERVING
        slow = AsyncConnectorServiceStub(channel).GetTask(slow_get(0.5), timeout=10)
        await asyncio.sleep(0.1)
        stopping = asyncio.create_task(daemon.server.stop())
        assert (await watch.read()).status == NOT_SERVING
        watch.cancel()
        assert (await slow).resource.message == "slept"
        await asyncio.wait_for(stopping, 5)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        await channel.close()


async def test_requests_still_running_after_the_grace_period_are_cancelled(caplog: pytest.LogCaptureFixture) -> None:
    dc.SlowConnector.cancelled.clear()
    async with serve_in_background(fresh_registry()) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            call = AsyncConnectorServiceStub(channel).GetTask(slow_get(20), timeout=10)
            await asyncio.sleep(0.2)
            started = time.monotonic()
            await daemon.server.stop(grace=0.3)
            with pytest.raises(grpc.aio.AioRpcError):
                await call
    assert time.monotonic() - started < 3
    assert dc.SlowConnector.cancelled == [20.0]
    assert "cancelled 1 requests that did not finish within 0.3s" in caplog.text


async def test_reflection_lists_and_describes_the_services() -> None:
    async with serve_in_background(fresh_registry()) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            requests = [
                reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICES[0]),
            ]
            replies = [r async for r in stub.ServerReflectionInfo(iter(requests), timeout=10)]
    listed = {s.name for s in replies[0].list_services_response.service}
    assert listed >= {*SERVICES, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
    assert replies[1].file_descriptor_response.file_descriptor_proto


async def test_a_reflection_session_may_pause_between_questions() -> None:
    """A probe's body must arrive within 1 s (daemon/bodies.py), but only a stream's first
    message is timed: a client that asks again 1.5 s later is still answered."""
    async def questions() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")
        await asyncio.sleep(1.5)
        yield reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICES[0])

    async with serve_in_background(fresh_registry()) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            replies = [r async for r in stub.ServerReflectionInfo(questions(), timeout=10)]
    assert len(replies) == 2 and replies[1].file_descriptor_response.file_descriptor_proto


async def test_metrics_endpoint(plugin_path: Path) -> None:
    registry = fresh_registry()
    async with serve_in_background(registry, plugins=["good-module"], metrics_port=0) as daemon:
        assert daemon.metrics_url and daemon.server.metrics_port != daemon.port
        await daemon.client.list_connectors()
        inputs = Inputs(literals=[NamedLiteral(name="n", value=python_to_literal(7))])
        meta = await daemon.client.create(TaskTemplate(type="echo"), "s3://out", inputs)
        await daemon.client.get(("echo", 0), meta)
        with pytest.raises(UsageError):
            await daemon.client.get(("echo", 0), b"garbage")
        with pytest.raises(ConnectorNotFound):
            await daemon.client.get(("nope", 0), meta)
        text = await asyncio.to_thread(scrape, daemon.metrics_url)
    expected = [
        'flyte_connector_requests_success_total{operation="create",task_type="echo"} 1.0',
        'flyte_connector_requests_success_total{operation="get",task_type="echo"} 1.0',
        'flyte_connector_requests_failure_total{error_code="500",grpc_code="INVALID_ARGUMENT",operation="get",task_type="echo"} 1.0',
        'flyte_connector_requests_failure_total{error_code="404",grpc_code="NOT_FOUND",operation="get",task_type="nope"} 1.0',
        'flyte_connector_requests_total{code="OK",operation="list_connectors",task_type=""} 1.0',
        'flyte_connector_request_latency_seconds_count{operation="get",task_type="echo"} 2.0',
        'flyte_connector_request_duration_seconds_count{operation="get",task_type="echo"} 2.0',
        'flyte_connector_requests_in_flight{operation="get"} 0.0',
        "flyte_connector_plugins_loaded 1.0",
        "flyte_connector_plugins_failed 0.0",
        'flyte_connector_input_literal_bytes_count{task_type="echo"} 1.0',
        'flyte_connector_input_size_bytes_count{task_type="echo"} 1.0',
    ]
    missing = [line for line in expected if line not in text]
    assert not missing, missing
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    series = exported_series()
    names = {line.split("{")[0].split(" ")[0] for line in samples}
    ours = {name for name in names if name.startswith("flyte_connector_")}
    assert ours <= set(series), ours - set(series)
    assert "process_resident_memory_bytes" in names and "python_info" in names
    assert set(re.findall(r'operation="(\w+)"', text)) <= set(OPERATIONS)
    inf = 'flyte_connector_request_duration_seconds_bucket{le="+Inf",operation="get",task_type="echo"} 2.0'
    assert inf in text


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


async def test_tls(pki: dict[str, Path]) -> None:
    tls = ClientTLS(ca_cert=str(pki["ca"]))
    options = {"tls_cert": str(pki["server"]), "tls_key": str(pki["server_key"])}
    async with serve_in_background(fresh_registry(), client_tls=tls, **options) as daemon:
        assert [c.name for c in await daemon.client.list_connectors()][0] == "Echo"
        async with grpc.aio.insecure_channel(daemon.address) as plain:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await ConnectorMetadataServiceStub(plain).ListConnectors(pb.ListConnectorsRequest(), timeout=3)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_requires_a_client_certificate(pki: dict[str, Path]) -> None:
    with_cert = ClientTLS(ca_cert=str(pki["ca"]), cert=str(pki["client"]), key=str(pki["client_key"]))
    options = {"tls_cert": str(pki["server"]), "tls_key": str(pki["server_key"]), "tls_client_ca": str(pki["ca"])}
    async with serve_in_background(fresh_registry(), client_tls=with_cert, **options) as daemon:
        assert len(await daemon.client.list_connectors()) == 5
        from connector_cli.client import ConnectorClient

        async with ConnectorClient(daemon.address, tls=ClientTLS(ca_cert=str(pki["ca"])), timeout=3) as anonymous:
            with pytest.raises(RemoteError) as info:
                await anonymous.list_connectors()
        assert info.value.code == "UNAVAILABLE"


async def test_bad_tls_files_and_a_taken_port_are_startup_errors(pki: dict[str, Path], tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    cases = [
        (ServerConfig(host="127.0.0.1", port=0, metrics_port=None, tls_cert=str(tmp_path / "missing.pem"), tls_key=str(pki["server_key"])), "cannot read the TLS certificate"),
        (ServerConfig(host="127.0.0.1", port=0, metrics_port=None, tls_cert=str(garbage), tls_key=str(pki["server_key"])), "not a valid PEM certificate and matching private key"),
        (ServerConfig(host="127.0.0.1", port=0, metrics_port=None, tls_cert=str(pki["server"]), tls_key=str(pki["client_key"])), "not a valid PEM certificate and matching private key"),
        (ServerConfig(host="127.0.0.1", port=0, metrics_port=None, tls_cert=str(pki["server"]), tls_key=str(pki["server_key"]), tls_client_ca=str(garbage)), "client CA"),
    ]
    for config, text in cases:
        with pytest.raises(StartupError, match=text):
            await ConnectorServer(ConnectorRegistry(), config).start()
    async with serve_in_background(ConnectorRegistry(), metrics_port=0) as daemon:
        for port, metrics_port, text in [(daemon.port, None, "cannot listen on 127.0.0.1:.*in use"), (0, daemon.server.metrics_port, "cannot serve metrics")]:
            server = ConnectorServer(ConnectorRegistry(), ServerConfig(host="127.0.0.1", port=port, metrics_port=metrics_port))
            with pytest.raises(StartupError, match=text):
                await server.start()
        assert len(await daemon.client.list_connectors()) == 0


async def test_list_endpoint_asks_a_running_daemon() -> None:
    async with serve_in_background(fresh_registry()) as daemon:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "connector_cli", "list", "--endpoint", daemon.address, "--json",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(), cwd=REPO,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    data = json.loads(out)
    assert data["connectors"][0] == {
        "name": "Echo", "task_types": [{"name": "echo", "version": 0}],
        "source": {"kind": "endpoint", "endpoint": daemon.address, "description": daemon.address},
    }
    assert data["failed"] == []


def test_list_endpoint_errors_are_one_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_cli("list", "--endpoint", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert f"cannot reach the connector daemon at 127.0.0.1:{port}" in result.stderr
    result = run_cli("list", "--endpoint", "127.0.0.1:1", "--plugins", "none")
    assert result.returncode == 2 and "--plugins loads plugins here" in result.stderr


async def test_sigterm_drains_the_request_in_flight_and_exits_0() -> None:
    daemon = Daemon(FLYTE_CONNECTOR_GRACE_PERIOD="10")
    address = daemon.wait_ready()
    async with grpc.aio.insecure_channel(address) as channel:
        call = AsyncConnectorServiceStub(channel).GetTask(slow_get(1.0), timeout=10)
        await wait_in_flight()
        daemon.proc.send_signal(signal.SIGTERM)
        response = await call
    assert response.resource.message == "slept"
    code, log = await asyncio.to_thread(daemon.finish)
    assert code == 0, log
    assert "received SIGTERM" in log and "draining 1 in-flight request " in log and "stopped" in log


async def test_a_second_signal_stops_at_once() -> None:
    daemon = Daemon("--grace-period", "60")
    address = daemon.wait_ready()
    async with grpc.aio.insecure_channel(address) as channel:
        calls = [AsyncConnectorServiceStub(channel).GetTask(slow_get(30), timeout=20),
                 AsyncConnectorServiceStub(channel).GetTask(pb.GetTaskRequest(
                     task_category=pb.TaskCategory(name="blocking"),
                     resource_meta=dc.Empty(seconds=30).encode()), timeout=20)]
        await wait_in_flight()
        started = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        daemon.proc.send_signal(signal.SIGINT)
        code, log = await asyncio.to_thread(daemon.finish, 10)
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError):
                await call
    assert time.monotonic() - started < 5
    assert code == 128 + signal.SIGINT, log
    assert "received SIGINT again: stopping now" in log and "draining 2 in-flight" in log


def test_startup_failures_are_one_line_and_non_zero(installed_dists: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        result = run_cli("serve", "--host", "127.0.0.1", "--port", str(taken), "--metrics-port", "0", "--plugins", "none")
    assert result.returncode == 1
    assert f"Error: cannot listen on 127.0.0.1:{taken}: Address already in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2  # the "no connectors" warning, the error
    result = run_cli("serve", "--port", "0", "--plugins", "none", "-m", "fc_broken.raises", PYTHONPATH=str(installed_dists))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("Error: cannot start: importing 'fc_broken.raises' raised RuntimeError")
    result = run_cli("serve", "--port", "0", "--plugins", "good-module,broken-raises", "--strict", PYTHONPATH=str(installed_dists))
    assert result.returncode == 1
    assert "(--strict refuses failed plugins)" in result.stderr
    assert result.stderr.count("broken-raises") == 1, result.stderr  # said once, as the error
    result = run_cli("serve", "--port", "0", "--workers", "0")
    assert result.returncode == 2 and "--workers" in result.stderr


def test_failed_plugins_are_warned_about_and_the_rest_served(installed_dists: Path) -> None:
    daemon = Daemon("--plugins", "good-module,broken-raises", FLYTE_CONNECTOR_LOG_FORMAT="json",
                    PYTHONPATH=os.pathsep.join([str(installed_dists), str(FIXTURES), str(REPO)]))
    daemon.wait_ready()
    daemon.proc.send_signal(signal.SIGTERM)
    code, log = daemon.finish()
    records = [json.loads(line) for line in log.splitlines()]
    warnings = [r for r in records if r["level"] == "WARNING"]
    assert code == 0 and warnings and "broken-raises" in warnings[0]["message"]
    assert any("fc-good" in r["message"] for r in records if r["level"] == "INFO")


async def test_docs_example_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.syspath_prepend(str(REPO / "docs" / "examples"))
    from daemon_check import main

    resource = await main()
    assert "serves ['Hello']" in capsys.readouterr().out
    assert resource.phase == TaskExecution.SUCCEEDED and resource.message == "greeted"



def test_ready_in_is_the_time_to_the_first_possible_answer() -> None:
    """The figure covers the interpreter, imports and plugin loading, not just the bind:
    a client polling from the moment the process is launched gets its first answer no
    sooner than the figure says (and not much later)."""
    from tests.helpers.flyte_support import free_port

    port = free_port()
    launched = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector_cli", "serve", "--host", "127.0.0.1", "--port",
         str(port), "--metrics-port", "0", "--plugins", "shell,sql"],
        stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=REPO)
    try:
        while time.monotonic() - launched < 60:
            try:
                with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                    ConnectorMetadataServiceStub(channel).ListConnectors(
                        pb.ListConnectorsRequest(), timeout=1)
                break
            except grpc.RpcError:
                time.sleep(0.01)
        first_answer = time.monotonic() - launched
    finally:
        proc.terminate()
        log = proc.communicate(timeout=30)[1]
    ready = float(re.search(r"ready in ([\d.]+)s", log).group(1))  # type: ignore[union-attr]
    assert first_answer - 0.25 <= ready <= first_answer + 0.01, (ready, first_answer)


async def test_unknown_task_types_keep_their_name_as_a_label_up_to_a_bound() -> None:
    from connector_cli.daemon.servicers import MAX_UNKNOWN_LABELS

    async with serve_in_background(fresh_registry(), metrics_port=0) as daemon:
        for i in range(MAX_UNKNOWN_LABELS + 5):
            with pytest.raises(ConnectorNotFound):
                await daemon.client.get((f"nope{i}", 0), b"{}")
        text = await asyncio.to_thread(scrape, daemon.metrics_url)
    labels = set(re.findall(r'requests_failure_total\{[^}]*task_type="([^"]+)"', text))
    assert labels == {f"nope{i}" for i in range(MAX_UNKNOWN_LABELS)} | {"unknown"}
