"""`serve --processes N`: real worker processes on one port, supervised by the parent."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import grpc
import grpc.aio
import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector.service_pb2_grpc import AsyncConnectorServiceStub
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import HERE, REPO, cli_env

BIN = Path(sys.executable).parent
CONNECTORS = HERE / "fixtures" / "connectors"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Daemon:
    """`flyte-connector serve --processes 2` with the pid connectors, its log collected."""

    def __init__(self, processes: int = 2, *more: str) -> None:
        self.metrics_port = free_port()
        self.proc = subprocess.Popen(
            [str(BIN / "flyte-connector"), "serve", "--host", "127.0.0.1", "--port", "0",
             "--metrics-port", str(self.metrics_port), "--plugins", "none",
             "-m", "process_connectors", "--processes", str(processes), "--grace-period", "10",
             *more],
            stderr=subprocess.PIPE, text=True, cwd=REPO,
            env=cli_env(PYTHONPATH=os.pathsep.join([str(CONNECTORS), str(REPO)])),
        )
        self.log: list[str] = []
        self.address = self.wait_for(r"supervising \d+ worker processes on (127\.0\.0\.1:\d+)")

    def wait_for(self, pattern: str, timeout: float = 60) -> str:
        """Read the log until a line matches; the first group."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            match = re.search(pattern, line)
            if match:
                return match.group(1)
        self.proc.kill()
        pytest.fail(f"no {pattern!r} in the log:\n" + "".join(self.log))

    def workers(self) -> set[int]:
        """Pids of the parent's live child processes."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return {int(p) for p in children.read_text().split()}

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()

    def stop(self, send: bool = True) -> int:
        """SIGTERM (unless `send` is False) and wait; the exit status."""
        if self.proc.stderr is None or self.proc.stderr.closed:
            return self.proc.wait()
        if send and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        assert self.proc.stderr is not None
        self.log.append(self.proc.stderr.read())
        self.proc.stderr.close()
        return code


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    d = Daemon()
    yield d
    d.stop()


async def served_by(address: str, calls: int, task_type: str = "pid") -> list[int]:
    """GetTask `calls` times, each on its own connection; the pid that answered each."""
    request = pb.GetTaskRequest(task_category=pb.TaskCategory(name=task_type),
                                resource_meta=b'{"job_id":"j"}')

    async def one() -> int:
        options = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(address, options=options) as channel:
            response = await AsyncConnectorServiceStub(channel).GetTask(request, timeout=30)
        return int(response.resource.message)

    return list(await asyncio.gather(*(one() for _ in range(calls))))


def test_requests_spread_over_the_workers_and_health_serves(daemon: Daemon) -> None:
    workers = daemon.workers()
    assert len(workers) == 2 and daemon.proc.pid not in workers
    pids = asyncio.run(served_by(daemon.address, 24))
    assert set(pids) == workers  # 24 connections, 2 workers: both answer
    with grpc.insecure_channel(daemon.address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_a_killed_worker_is_replaced(daemon: Daemon) -> None:
    victim = min(daemon.workers())
    os.kill(victim, signal.SIGKILL)
    daemon.wait_for(r"worker \d \(pid (\d+)\) exited with SIGKILL; restarting")
    new = int(daemon.wait_for(r"worker \d restarted \(pid (\d+)\)"))
    deadline, seen = time.monotonic() + 60, set()
    while new not in seen and time.monotonic() < deadline:
        seen |= set(asyncio.run(served_by(daemon.address, 12)))
    assert new in seen and victim not in seen
    assert daemon.workers() == seen


def test_sigterm_drains_every_worker(daemon: Daemon) -> None:
    workers = daemon.workers()
    request = pb.GetTaskRequest(task_category=pb.TaskCategory(name="slow"),
                                resource_meta=b'{"job_id":"j"}')

    async def drain() -> list[int]:
        options = [("grpc.use_local_subchannel_pool", 1)]
        channels = [grpc.aio.insecure_channel(daemon.address, options=options)
                    for _ in range(16)]
        try:
            for channel in channels:  # connected first, so every call is sent at once
                await asyncio.wait_for(channel.channel_ready(), 30)
            calls = [asyncio.ensure_future(AsyncConnectorServiceStub(c).GetTask(
                request, timeout=30)) for c in channels]
            await asyncio.sleep(1.0)  # the 3 s calls are in flight on both workers
            daemon.proc.send_signal(signal.SIGTERM)
            return [int(r.resource.message) for r in await asyncio.gather(*calls)]
        finally:
            for channel in channels:
                await channel.close()

    pids = asyncio.run(drain())
    assert set(pids) == workers  # every in-flight call finished, on both workers
    assert daemon.stop(send=False) == 0
    assert "draining 2 workers" in "".join(daemon.log)
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(
            f"/proc/{pid}/status").read_text()


def test_metrics_are_summed_over_the_workers(daemon: Daemon) -> None:
    pids = asyncio.run(served_by(daemon.address, 20))
    assert len(set(pids)) == 2
    series = 'flyte_connector_requests_total{code="OK",operation="get",task_type="pid"}'
    deadline, text = time.monotonic() + 30, ""
    while time.monotonic() < deadline:
        text = daemon.metrics()
        if f"{series} 20.0" in text:
            break
        time.sleep(0.2)
    assert f"{series} 20.0" in text
    assert 'flyte_connector_request_latency_seconds_count{operation="get",task_type="pid"} 20.0' \
        in text
    assert "flyte_connector_plugins_loaded 1.0" in text


def test_processes_option_rejects_nonsense() -> None:
    result = subprocess.run(
        [str(BIN / "flyte-connector"), "serve", "--processes", "zero"],
        capture_output=True, text=True, env=cli_env(), timeout=60,
    )
    assert result.returncode == 2
    assert "not a number of processes" in result.stderr


def test_workers_stop_when_the_supervisor_is_killed(daemon: Daemon) -> None:
    workers = daemon.workers()
    daemon.proc.kill()
    daemon.proc.wait(30)
    deadline = time.monotonic() + 60
    alive = set(workers)
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if Path(f"/proc/{pid}").exists()
                 and "zombie" not in Path(f"/proc/{pid}/status").read_text()}
        time.sleep(0.1)
    assert not alive


def test_the_timeout_stops_the_supervisor_and_its_workers() -> None:
    daemon = Daemon(2, "--timeout", "1")
    workers = daemon.workers()
    try:
        code = daemon.proc.wait(30)
    finally:
        code = daemon.stop(send=False)
    log = "".join(daemon.log)
    assert code == 0, log
    assert "timeout of 1s reached: draining 2 workers" in log and "restarting" not in log
    assert not any(Path(f"/proc/{pid}").exists() and "zombie" not in Path(
        f"/proc/{pid}/status").read_text() for pid in workers)


def test_a_repeated_sigterm_keeps_draining_and_sigint_forces(daemon: Daemon) -> None:
    request = pb.GetTaskRequest(task_category=pb.TaskCategory(name="slow"),
                                resource_meta=b'{"job_id":"j"}')

    async def interrupt() -> grpc.StatusCode:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            call = AsyncConnectorServiceStub(channel).GetTask(request, timeout=30)
            await asyncio.sleep(1.0)
            daemon.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            daemon.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            assert daemon.proc.poll() is None  # still draining the 3 s call
            daemon.proc.send_signal(signal.SIGINT)
            try:
                await call
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

    code = asyncio.run(interrupt())
    assert code != grpc.StatusCode.OK  # forced: the slow call did not get to finish
    assert daemon.stop(send=False) == 130
    log = "".join(daemon.log)
    assert "received SIGTERM again: still draining (SIGINT stops at once)" in log
    assert "received SIGINT again: stopping the workers now" in log


def test_processes_refuse_host_local_connectors() -> None:
    """Issue 28, item 14: a shell job could bind the daemon's port with SO_REUSEPORT and
    took 20 of 20 new backend connections."""
    result = subprocess.run(
        [str(BIN / "flyte-connector"), "serve", "--processes", "2", "--host", "127.0.0.1",
         "--port", str(free_port()), "--plugins", "shell"],
        capture_output=True, text=True, env=cli_env(FLYTE_CONNECTOR_METRICS_PORT="0"),
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "--processes cannot serve host-local connectors (Shell)" in result.stderr
