"""Issue 28, item 7, through a real daemon: GetTaskLogs of a 1 GB log from 4 clients that
read one message and stop. Each call read the whole log into memory before (4.2 GiB
peak RSS measured against the code before the fix); a page is now at most 1 MiB."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import grpc.aio
import pytest
from conftest import make_template
from flyteidl2.connector import connector_pb2 as pb

from connector_cli.client import ConnectorClient
from connector_cli.signing import unsigned_payload
from tests.helpers.daemon_process import Daemon
from tests.helpers.pressure import figure, health_while, peak_rss_mib

pytestmark = pytest.mark.timeout(120)
LOGS = "/flyteidl2.connector.AsyncConnectorService/GetTaskLogs"


async def test_slow_readers_of_a_huge_log_pin_one_page_each(tmp_path: Path) -> None:
    daemon = Daemon("--plugins", "shell", FLYTE_CONNECTOR_STATE_DIR=str(tmp_path / "state"),
                    FLYTE_CONNECTOR_SHELL_STATE_DIR=str(tmp_path / "shell"))
    address = daemon.wait_ready()
    try:
        async with ConnectorClient(address) as client:
            meta = await client.create(make_template({"script": "sleep 300"}),
                                       str(tmp_path / "out"))
            job_dir = json.loads(unsigned_payload(meta))["job_dir"]
            with open(f"{job_dir}/stdout", "r+b") as out:  # 1 GB, sparse
                out.write((b"x" * 65535 + b"\n") * 64)
                out.truncate(1 << 30)
            request = pb.GetTaskLogsRequest(task_category=pb.TaskCategory(name="shell"),
                                            resource_meta=meta, lines=10**9)
            async with grpc.aio.insecure_channel(address) as channel:
                async def readers() -> int:
                    calls = [channel.unary_stream(LOGS)(request.SerializeToString(), timeout=60)
                             for _ in range(4)]
                    firsts = [asyncio.ensure_future(call.read()) for call in calls]
                    await asyncio.sleep(4)
                    for call in calls:
                        call.cancel()
                    return sum(f.done() for f in firsts)

                slowest, answered = await health_while(address, readers)
            peak = peak_rss_mib(daemon.proc.pid)
            await client.delete(("shell", 0), meta)
    finally:
        daemon.proc.terminate()
        daemon.finish()
    figure(f"4 slow readers of a 1 GB shell log: peak RSS {peak:.0f} MiB, "
           f"slowest health {slowest:.3f}s")
    assert answered == 4
    assert peak < 256, f"peak RSS {peak:.0f} MiB"
    assert slowest < 1.0
