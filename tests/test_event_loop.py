"""The daemon's event loop: uvloop when installed (the `uvloop` extra), asyncio's own with
FLYTE_CONNECTOR_UVLOOP=0; a real `serve` on each answers, maps statuses and drains."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import grpc.aio
import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector.service_pb2_grpc import AsyncConnectorServiceStub

from connector_cli.daemon.loop import ENV, uvloop_module
from tests.conftest import HERE, REPO, cli_env

BIN = Path(sys.executable).parent
CONNECTORS = HERE / "fixtures" / "connectors"
READY = r"listening on (127\.0\.0\.1:\d+) \(.*\) ready in [\d.]+s on (\w+)"


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def test_the_switch_turns_uvloop_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for off in ("0", "false", "OFF"):
        monkeypatch.setenv(ENV, off)
        assert uvloop_module() is None
    monkeypatch.delenv(ENV)
    assert (uvloop_module() is not None) == _has_uvloop()


async def _calls(address: str) -> tuple[str, grpc.StatusCode]:
    """A GetTask that succeeds and one for a task type nobody serves."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = AsyncConnectorServiceStub(channel)
        got = await stub.GetTask(pb.GetTaskRequest(
            task_category=pb.TaskCategory(name="pid"), resource_meta=b'{"job_id":"j"}'),
            timeout=30)
        await stub.DeleteTask(pb.DeleteTaskRequest(
            task_category=pb.TaskCategory(name="pid"), resource_meta=b'{"job_id":"j"}'),
            timeout=30)
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetTask(pb.GetTaskRequest(
                task_category=pb.TaskCategory(name="nope"), resource_meta=b"{}"), timeout=30)
    return got.resource.message, missing.value.code()


@pytest.mark.parametrize("setting, loop", [("1", "uvloop"), ("0", "asyncio")])
def test_serve_runs_on_the_chosen_loop(setting: str, loop: str) -> None:
    if loop == "uvloop" and not _has_uvloop():
        pytest.skip("uvloop is not installed (the `uvloop` extra)")
    proc = subprocess.Popen(
        [str(BIN / "flyte-connector"), "serve", "--host", "127.0.0.1", "--port", "0",
         "--metrics-port", "0", "--plugins", "none", "-m", "process_connectors"],
        stderr=subprocess.PIPE, text=True, cwd=REPO,
        env=cli_env(PYTHONPATH=os.pathsep.join([str(CONNECTORS), str(REPO)]),
                    **{ENV: setting}),
    )
    assert proc.stderr is not None
    log: list[str] = []
    try:
        deadline = time.monotonic() + 60
        address = None
        while address is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            log.append(line)
            match = re.search(READY, line)
            if match:
                address = match.group(1)
                assert match.group(2) == loop, line
        assert address is not None, "".join(log)
        message, code = asyncio.run(_calls(address))
        assert message == str(proc.pid)
        assert code is grpc.StatusCode.NOT_FOUND
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            status = proc.wait()
        log.append(proc.stderr.read())
        proc.stderr.close()
    assert status == 0, "".join(log)
