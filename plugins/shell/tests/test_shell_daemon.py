"""The shell connector through real daemons and the generated gRPC stubs.

One daemon runs in-process (the `connector_daemon` fixture of the testing kit); the restart test runs two
`flyte-connector serve` subprocesses one after the other, as a redeployed connector would.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import AsyncIterator

import pytest
from conftest import alive, make_template, wait_for
from flyteidl2.core.execution_pb2 import TaskExecution
from flyteidl2.task.common_pb2 import Inputs, NamedLiteral

from connector_cli.client import ConnectorClient
from connector_cli.errors import UsageError
from connector_cli.literals import literal_to_python, python_to_literal
from connector_cli.signing import unsigned_payload
from flyte_connector_shell import procfs
from flyte_connector_shell.connector import ShellMeta

SHELL = ("shell", 0)
FLYTE_CONNECTOR = str(Path(sys.executable).with_name("flyte-connector"))


def inputs(**values: object) -> Inputs:
    return Inputs(literals=[NamedLiteral(name=k, value=python_to_literal(v)) for k, v in values.items()])


async def poll(client: ConnectorClient, meta: bytes, prefix: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        resource = await client.get(SHELL, meta, prefix)
        if resource.phase in (TaskExecution.SUCCEEDED, TaskExecution.FAILED, TaskExecution.ABORTED):
            return resource
        assert time.monotonic() < deadline, "job did not finish"
        await asyncio.sleep(0.05)


def kill_job(meta: bytes) -> None:
    decoded = ShellMeta.decode(unsigned_payload(meta))
    procfs.terminate(decoded.pid, decoded.start_ticks, decoded.boot_id, 0.0, nonce=decoded.nonce)


async def test_a_job_end_to_end_through_the_daemon(connector_daemon, tmp_path: Path) -> None:
    template = make_template(
        {"script": 'echo "hello $FLYTE_INPUT_WHO"; echo "$FLYTE_INPUT_WHO" > "$FLYTE_OUTPUT_DIR/who.txt"',
         "outputs": {"who": "who.txt"}},
        outputs={"exit_code": "int", "who": "file"},
    )
    prefix = str(tmp_path / "out")
    daemon = await connector_daemon(plugins=["shell"])
    assert [c.name for c in await daemon.client.list_connectors()] == ["Shell"]
    meta = await daemon.client.create(template, prefix, inputs(who="$(id)"))
    resource = await poll(daemon.client, meta, prefix)
    assert resource.phase == TaskExecution.SUCCEEDED, resource.message
    outputs = {n.name: literal_to_python(n.value) for n in resource.outputs.literals}
    assert outputs["exit_code"] == 0
    assert Path(outputs["who"].uri).read_text() == "$(id)\n"
    assert [link.name for link in resource.log_links] == ["stdout", "stderr"]
    messages = [m async for m in daemon.client.get_logs(SHELL, meta)]
    assert [line.message for m in messages for line in m.body.lines] == ["hello $(id)"]
    assert not any(m.HasField("header") for m in messages)
    metrics = await daemon.client.get_metrics(SHELL, meta, queries=["cpu_seconds"])
    assert [r.metric for r in metrics.results] == ["cpu_seconds"]


async def test_logs_pages_and_delete_through_the_daemon(connector_daemon, tmp_path: Path) -> None:
    template = make_template({"script": "seq 1 7; sleep 30"})
    daemon = await connector_daemon(plugins=["shell"])
    meta = await daemon.client.create(template, str(tmp_path))
    try:
        path = Path(ShellMeta.decode(unsigned_payload(meta)).job_dir) / "stdout"
        assert wait_for(lambda: path.stat().st_size == 14)
        first = [m async for m in daemon.client.get_logs(SHELL, meta, lines=5)]
        assert first[0].header.token == "10:0"
        assert [line.message for line in first[1].body.lines] == ["1", "2", "3", "4", "5"]
        rest = [m async for m in daemon.client.get_logs(SHELL, meta, lines=5, token="10:0")]
        assert [line.message for line in rest[1].body.lines] == ["6", "7"]
        with pytest.raises(UsageError, match="was not issued"):
            [m async for m in daemon.client.get_logs(SHELL, meta, token="x")]
        live = await daemon.client.get_metrics(SHELL, meta, queries=["processes"])
        assert int(live.results[0].data["result"][0]["values"][0][1]) >= 1
        started = time.monotonic()
        await daemon.client.delete(SHELL, meta)
        assert time.monotonic() - started < 2.0
        assert (await daemon.client.get(SHELL, meta)).phase == TaskExecution.ABORTED
        await daemon.client.delete(SHELL, meta)
    finally:
        kill_job(meta)


async def test_bad_templates_and_metas_are_invalid_argument(connector_daemon, tmp_path: Path) -> None:
    daemon = await connector_daemon(plugins=["shell"])
    with pytest.raises(UsageError, match="exactly one of 'command'"):
        await daemon.client.create(make_template({}), str(tmp_path))
    with pytest.raises(UsageError, match="resource_meta"):
        await daemon.client.get(SHELL, b"not json")


class Daemon:
    """`flyte-connector serve` in a subprocess, serving only the shell plugin."""

    def __init__(self, log: Path) -> None:
        """Both daemons of a test share a state directory, hence the generated meta key."""
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLYTE_CONNECTOR_")}
        with open(log, "wb") as stderr:
            self.proc = subprocess.Popen(
                [FLYTE_CONNECTOR, "serve", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
                 "--plugins", "shell", "--grace-period", "1",
                 "--state-dir", str(log.parent / "daemon-state")],
                stdout=subprocess.DEVNULL, stderr=stderr, env=env,
            )
        found = wait_for(lambda: re.search(r"listening on (127\.0\.0\.1:\d+)", log.read_text()), timeout=20)
        assert found, log.read_text()
        self.address = re.search(r"listening on (127\.0\.0\.1:\d+)", log.read_text()).group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=15)


@pytest.fixture
async def first_daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    daemon = Daemon(tmp_path / "first.log")
    yield daemon
    daemon.stop()


async def test_get_and_delete_work_from_a_restarted_daemon(first_daemon: Daemon, tmp_path: Path) -> None:
    prefix = str(tmp_path / "out")
    long_job = make_template({"command": ["sh", "-c", "echo started; sleep 30 & sleep 30"]})
    short_job = make_template({"command": ["sh", "-c", "sleep 0.3; echo done > \"$FLYTE_OUTPUT_DIR/r\""],
                               "outputs": {"r": "r"}})
    async with ConnectorClient(first_daemon.address) as client:
        long_meta = await client.create(long_job, prefix)
        short_meta = await client.create(short_job, prefix)
    try:
        first_daemon.stop()
        assert first_daemon.proc.returncode == 0
        leader = ShellMeta.decode(unsigned_payload(long_meta)).pid
        assert alive(leader), "the job must outlive the daemon that started it"
        second = Daemon(tmp_path / "second.log")
        try:
            async with ConnectorClient(second.address) as client:
                assert (await client.get(SHELL, long_meta, prefix)).phase == TaskExecution.RUNNING
                finished = await poll(client, short_meta, prefix)
                assert finished.phase == TaskExecution.SUCCEEDED, finished.message
                assert {n.name for n in finished.outputs.literals} == {"exit_code", "r"}
                logs = [m async for m in client.get_logs(SHELL, long_meta)]
                assert [line.message for m in logs for line in m.body.lines] == ["started"]
                decoded = ShellMeta.decode(unsigned_payload(long_meta))
                tree = [p.pid for p in procfs.job_processes(decoded.pid, decoded.start_ticks, decoded.boot_id, nonce=decoded.nonce)]
                assert len(tree) >= 3
                started = time.monotonic()
                await client.delete(SHELL, long_meta)
                assert time.monotonic() - started < 2.0
                assert not [pid for pid in tree if alive(pid)]
                assert (await client.get(SHELL, long_meta, prefix)).phase == TaskExecution.ABORTED
        finally:
            second.stop()
    finally:
        kill_job(long_meta)
        kill_job(short_meta)
