"""Hostile requests against a real daemon: garbage bodies, deep nesting, bad metas, sizes.

Every caller-made mistake must end as INVALID_ARGUMENT or RESOURCE_EXHAUSTED with a short
message (never UNKNOWN or INTERNAL), log at most one bounded line, and leave the daemon
serving.
"""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.core.security_pb2 import Connection
from flyteidl2.core.tasks_pb2 import TaskTemplate

from connector_cli.sdk.registry import ConnectorRegistry
from connector_cli.testing import serve_in_background
from tests.conftest import REPO, cli_env
from tests.fixtures.connectors import daemon_connectors as dc
from tests.helpers.raw_grpc import raw_call

METHODS = ("CreateTask", "GetTask", "DeleteTask", "GetTaskMetrics")
GARBAGE = [b"\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x12\x05abc", b"\x08" * 7]


def fresh_registry() -> ConnectorRegistry:
    registry = ConnectorRegistry()
    for cls in dc.ALL:
        registry.register(cls())
    return registry


def nested_literal_request(depth: int) -> bytes:
    """A CreateTaskRequest whose one input is a list nested `depth` deep."""
    request = pb.CreateTaskRequest(template=TaskTemplate(type="echo"))
    value = request.inputs.literals.add(name="x").value
    for _ in range(depth):
        value = value.collection.literals.add()
    value.scalar.primitive.integer = 1
    return request.SerializeToString()


async def test_undecodable_bodies_are_invalid_argument_with_one_short_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with serve_in_background(fresh_registry()) as daemon:
        for method in (*METHODS, "GetTaskLogs"):
            for body in GARBAGE:
                code, details = await raw_call(daemon.address, method, body)
                assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, body, code, details)
                assert "not a valid" in details and len(details) < 200
    assert "Traceback" not in caplog.text
    assert "Exception deserializing" not in caplog.text
    bad = [r for r in caplog.records if "bad" in r.getMessage()]
    assert 1 <= len(bad) <= 6
    assert all(len(r.getMessage()) < 300 for r in bad)


async def test_literals_nested_deeply_are_invalid_argument() -> None:
    async with serve_in_background(fresh_registry()) as daemon:
        code, details = await raw_call(daemon.address, "CreateTask", nested_literal_request(50))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)


@pytest.mark.parametrize("meta", [b"[" * 100_000, b"{\"seconds\": \"\x00\"}" , b"\x00" * 10])
async def test_bad_metas_are_invalid_argument(meta: bytes) -> None:
    request = pb.GetTaskRequest(task_category=pb.TaskCategory(name="slow"), resource_meta=meta)
    async with serve_in_background(fresh_registry()) as daemon:
        code, details = await raw_call(daemon.address, "GetTask", request.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert len(details) < 400


async def test_too_many_secrets_are_refused_quickly_and_health_stays_responsive() -> None:
    secrets = {f"s{i}": f"value-{i:07d}" for i in range(300_000)}
    request = pb.GetTaskRequest(
        task_category=pb.TaskCategory(name="boom"), resource_meta=dc.Empty().encode(),
        connection=Connection(secrets=secrets),
    )
    body = request.SerializeToString()
    async with serve_in_background(fresh_registry(), max_message_size=32 << 20) as daemon:
        started = time.perf_counter()
        call = asyncio.create_task(raw_call(daemon.address, "GetTask", body))
        slowest = 0.0
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            check = channel.unary_unary("/grpc.health.v1.Health/Check")
            while not call.done():
                sent = time.perf_counter()
                await check(b"", timeout=10)
                slowest = max(slowest, time.perf_counter() - sent)
                await asyncio.sleep(0.01)
        code, details = await call
        elapsed = time.perf_counter() - started
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert "secrets" in details
    assert elapsed < 5, elapsed
    assert slowest < 2, f"a health check waited {slowest:.1f}s"


async def test_too_many_configs_are_refused() -> None:
    request = pb.GetTaskRequest(
        task_category=pb.TaskCategory(name="slow"), resource_meta=dc.Empty().encode(),
        connection=Connection(configs={f"c{i}": "v" for i in range(5000)}),
    )
    async with serve_in_background(fresh_registry()) as daemon:
        code, details = await raw_call(daemon.address, "GetTask", request.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "configs" in details, details


async def test_oversized_message_is_resource_exhausted() -> None:
    request = pb.GetTaskRequest(task_category=pb.TaskCategory(name="slow"),
                                output_prefix="x" * (2 << 20))
    async with serve_in_background(fresh_registry(), max_message_size=1 << 20) as daemon:
        code, _ = await raw_call(daemon.address, "GetTask", request.SerializeToString())
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_concurrent_large_requests_beyond_the_budget_are_resource_exhausted() -> None:
    def big(seconds: float) -> bytes:
        return pb.GetTaskRequest(
            task_category=pb.TaskCategory(name="slow"),
            resource_meta=dc.Empty(seconds=seconds).encode(), output_prefix="x" * (3 << 20),
        ).SerializeToString()

    async with serve_in_background(
        fresh_registry(), max_message_size=4 << 20, max_inflight_bytes=5 << 20
    ) as daemon:
        first = asyncio.create_task(raw_call(daemon.address, "GetTask", big(2.0)))
        await asyncio.sleep(0.5)
        code, details = await raw_call(daemon.address, "GetTask", big(0))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
        assert "retry" in details
        assert (await first)[0] == grpc.StatusCode.OK
        assert (await raw_call(daemon.address, "GetTask", big(0)))[0] == grpc.StatusCode.OK



def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def listening(stderr: Any) -> str:
    """The address from the daemon's ready line."""
    for line in stderr:
        match = re.search(r"listening on (\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError("the daemon exited before listening")


async def test_memory_is_given_back_after_a_burst_of_large_requests(tmp_path: Path) -> None:
    """A `flyte-connector serve` process: ten concurrent 8 MiB requests, then RSS is back
    near where it was (glibc would keep ~100 MiB of freed heap without the trim)."""
    big = pb.GetTaskRequest(task_category=pb.TaskCategory(name="slow"),
                            resource_meta=dc.Empty(seconds=0.3).encode(),
                            output_prefix="x" * (8 << 20)).SerializeToString()
    env = cli_env(PYTHONPATH=str(REPO / "tests" / "fixtures" / "connectors"))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "connector_cli", "serve", "--host", "127.0.0.1", "--port", "0",
         "--metrics-port", "0", "--plugins", "none", "-m", "daemon_connectors",
         "--max-inflight-bytes", str(200 << 20), "--log-level", "debug"],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert daemon.stderr is not None
        address = await asyncio.wait_for(asyncio.to_thread(listening, daemon.stderr), 30)
        for _ in range(2):
            assert (await raw_call(address, "GetTask", big))[0] == grpc.StatusCode.OK
        await asyncio.sleep(1.5)
        before = rss_mib(daemon.pid)
        results = await asyncio.gather(*(raw_call(address, "GetTask", big) for _ in range(10)))
        assert all(code == grpc.StatusCode.OK for code, _ in results), results
        peak = rss_mib(daemon.pid)
        await asyncio.sleep(4.0)  # the trims run 0.5 s and 3 s after the burst
        deadline = time.monotonic() + 15  # later on a loaded machine
        after = rss_mib(daemon.pid)
        while after - before >= 40 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            after = rss_mib(daemon.pid)
    finally:
        daemon.terminate()
        log = daemon.communicate(timeout=30)[1]
    trims = re.findall(r"after large requests: RSS ([\d.]+) -> ([\d.]+) MiB", log)
    assert trims, log[-2000:]
    if max(float(a) for a, _ in trims) - before >= 40:  # the heap was still held at a trim
        assert any(float(a) - float(b) > 10 for a, b in trims), log[-2000:]
    assert after - before < 40, f"RSS {before:.0f} -> {peak:.0f} -> {after:.0f} MiB"


async def test_large_garbage_gives_its_budget_back() -> None:
    garbage = b"\x0a\xff\xff\xff\xff\x0f" + b"\x00" * (2 << 20)
    async with serve_in_background(
        fresh_registry(), max_message_size=4 << 20, max_inflight_bytes=5 << 20
    ) as daemon:
        for _ in range(4):
            code, _ = await raw_call(daemon.address, "GetTask", garbage)
            assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert daemon.server.gate.inflight.used == 0
