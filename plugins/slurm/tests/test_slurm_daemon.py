"""The Slurm connector through `flyte-connector serve` subprocesses and the generated gRPC
stubs: a job created by one daemon is followed, read and cancelled by a restarted one."""

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
from flyte_connector_slurm.connector import SlurmMeta
from flyteidl2.core.execution_pb2 import TaskExecution
from flyteidl2.task.common_pb2 import Inputs, NamedLiteral
from slurm_cluster import SlurmCluster
from slurm_testlib import make_template, squeue_ids, wait_until

from connector_cli.client import ConnectorClient
from connector_cli.errors import UsageError
from connector_cli.literals import literal_to_python, python_to_literal

SLURM = ("slurm", 1)
FLYTE_CONNECTOR = str(Path(sys.executable).with_name("flyte-connector"))
TERMINAL = (TaskExecution.SUCCEEDED, TaskExecution.FAILED, TaskExecution.ABORTED,
            TaskExecution.RETRYABLE_FAILED)


def inputs(**values: object) -> Inputs:
    return Inputs(literals=[NamedLiteral(name=k, value=python_to_literal(v))
                            for k, v in values.items()])


async def poll(client: ConnectorClient, meta: bytes, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        resource = await client.get(SLURM, meta, "")
        if resource.phase in TERMINAL:
            return resource
        assert time.monotonic() < deadline, "job did not finish"
        await asyncio.sleep(0.2)


class Daemon:
    """`flyte-connector serve` in a subprocess, serving only the slurm plugin."""

    def __init__(self, log: Path) -> None:
        self.log = log
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("FLYTE_CONNECTOR_") or k.startswith("FLYTE_CONNECTOR_SLURM_")}
        with open(log, "wb") as stderr:
            self.proc = subprocess.Popen(
                [FLYTE_CONNECTOR, "serve", "--host", "127.0.0.1", "--port", "0",
                 "--metrics-port", "0", "--plugins", "slurm-batch", "--grace-period", "1"],
                stdout=subprocess.DEVNULL, stderr=stderr, env=env,
            )
        deadline = time.monotonic() + 20
        while not (found := re.search(r"listening on (127\.0\.0\.1:\d+)", log.read_text())):
            assert self.proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        self.address = found.group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=15)


@pytest.fixture
async def first_daemon(slurm: SlurmCluster, tmp_path: Path) -> AsyncIterator[Daemon]:
    daemon = Daemon(tmp_path / "first.log")
    yield daemon
    daemon.stop()


async def test_jobs_survive_a_daemon_restart(first_daemon: Daemon, tmp_path: Path) -> None:
    long_job = make_template({"script": "echo started; sleep 300"})
    short_job = make_template(
        {"script": 'sleep 1; printf "%s" "$FLYTE_INPUT_WHO" > "$FLYTE_OUTPUT_DIR/who"',
         "outputs": {"who": "who"}},
        outputs={"exit_code": "int", "who": "str"}, inputs={"who": "str"})
    async with ConnectorClient(first_daemon.address) as client:
        assert [c.name for c in await client.list_connectors()] == ["Slurm"]
        long_meta = await client.create(long_job, "")
        short_meta = await client.create(short_job, "", inputs(who="$(id)"))
    long_id = SlurmMeta.decode(long_meta).job_id
    try:
        first_daemon.stop()
        assert first_daemon.proc.returncode == 0
        second = Daemon(tmp_path / "second.log")
        try:
            async with ConnectorClient(second.address) as client:
                finished = await poll(client, short_meta)
                assert finished.phase == TaskExecution.SUCCEEDED, finished.message
                outputs = {n.name: literal_to_python(n.value) for n in finished.outputs.literals}
                assert outputs == {"exit_code": 0, "who": "$(id)"}
                assert await wait_until(lambda: _log_has(client, long_meta), 30)
                running = await client.get(SLURM, long_meta, "")
                assert running.phase == TaskExecution.RUNNING
                assert running.log_links[0].name == f"slurm job {long_id} stdout"
                metrics = await client.get_metrics(SLURM, long_meta, queries=["elapsed_seconds"])
                assert [r.metric for r in metrics.results] == ["elapsed_seconds"]
                await client.delete(SLURM, long_meta)
                assert await wait_until(lambda: long_id not in squeue_ids(), 30)
                assert (await poll(client, long_meta)).phase == TaskExecution.ABORTED
                await client.delete(SLURM, long_meta)
                with pytest.raises(UsageError, match="custom.cpus must be an integer"):
                    await client.create(make_template({"script": "true", "cpus": -1}), "")
                with pytest.raises(UsageError, match="resource_meta"):
                    await client.get(SLURM, b"not json")
        finally:
            second.stop()
    finally:
        subprocess.run(["scancel", str(long_id)], capture_output=True, timeout=30)


def _log_has(client: ConnectorClient, meta: bytes) -> bool:
    job_id = SlurmMeta.decode(meta).job_id
    path = Path(os.environ["FLYTE_CONNECTOR_SLURM_JOB_ROOT"]) / f"{job_id}.out"
    return path.exists() and path.read_text() == "started\n"


async def test_logs_through_the_daemon(first_daemon: Daemon) -> None:
    async with ConnectorClient(first_daemon.address) as client:
        meta = await client.create(make_template({"script": "seq 1 3; echo e >&2"}), "")
        assert (await poll(client, meta)).phase == TaskExecution.SUCCEEDED
        messages = [m async for m in client.get_logs(SLURM, meta)]
        assert [line.message for m in messages for line in m.body.lines] == ["1", "2", "3", "e"]
        assert not any(m.HasField("header") for m in messages)
        first = [m async for m in client.get_logs(SLURM, meta, lines=2)]
        assert first[0].header.token == "4:0"
