"""Shutdown edges: an open health Watch must not hold the drain, and a delete accepted
before the signal must finish (its job's processes gone) before the daemon stops."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from connector_cli.signing import unsigned_payload
from connector_cli.testing import make_template, serve_in_background
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
