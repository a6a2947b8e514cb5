"""Transient GetTask failures answered with the job's last known phase for a grace period
(`serve --get-error-grace`): which errors count, the bounded memory, a daemon that never
saw the job, permanent errors, the metric; and flyteplugins-databricks through a 503."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest
from flyteidl2.core.execution_pb2 import TaskExecution

from connector_cli import AsyncConnector, Resource, ResourceMeta, TransientError
from connector_cli.errors import RemoteError
from connector_cli.sdk.registry import ConnectorRegistry
from connector_cli.shield import JobMemory, is_transient
from connector_cli.testing import serve_in_background


class HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class ClientConnectionError(OSError):
    """Named like aiohttp's."""


@pytest.mark.parametrize("error, transient", [
    (TransientError("later"), True),
    (ConnectionRefusedError(111, "refused"), True),
    (TimeoutError(), True),
    (asyncio.TimeoutError(), True),
    (ClientConnectionError("reset"), True),
    (HttpError(503), True),
    (HttpError(429), True),
    (HttpError(404), False),
    (ValueError("bad template"), False),
    (FileNotFoundError("gone"), False),
    (RuntimeError("wrapped"), False),
])
def test_which_errors_are_transient(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_a_cause_counts_too() -> None:
    try:
        try:
            raise ConnectionResetError("peer")
        except ConnectionResetError as inner:
            raise RuntimeError("poll failed") from inner
    except RuntimeError as exc:
        assert is_transient(exc)


def test_the_memory_is_bounded_and_forgets_finished_jobs() -> None:
    memory = JobMemory(grace=60, capacity=3)
    for n in range(5):
        memory.seen(("t", 0, b"%d" % n), TaskExecution.RUNNING)
    assert len(memory) == 3
    assert memory.shield(("t", 0, b"0"), TransientError("x")) is None  # forgotten: oldest
    assert memory.shield(("t", 0, b"4"), TransientError("x"))[0] == TaskExecution.RUNNING
    memory.seen(("t", 0, b"4"), TaskExecution.SUCCEEDED)
    assert len(memory) == 2
    memory.seen(("t", 0, b"x" * 5000), TaskExecution.RUNNING)  # too large to remember
    assert len(memory) == 2


def test_the_grace_runs_from_the_first_failure_and_a_success_resets_it() -> None:
    memory = JobMemory(grace=0.2)
    key = ("t", 0, b"m")
    memory.seen(key, TaskExecution.QUEUED)
    phase, message = memory.shield(key, TransientError("down"))  # type: ignore[misc]
    assert phase == TaskExecution.QUEUED and "status check failing since" in message
    time.sleep(0.25)
    assert memory.shield(key, TransientError("down")) is None
    memory.seen(key, TaskExecution.RUNNING)
    assert memory.shield(key, TransientError("down")) is not None
    assert memory.shield(key, ValueError("permanent")) is None


@dataclass
class FlakyMeta(ResourceMeta):
    job: str


class Flaky(AsyncConnector):
    """`get` fails with whatever `failure` holds, else reports RUNNING."""

    name = "Flaky"
    task_type_name = "flaky"
    metadata_type = FlakyMeta
    failure: Any = None

    async def create(self, task_template: Any, output_prefix: str, inputs: Any = None,
                     task_execution_metadata: Any = None, **kwargs: Any) -> FlakyMeta:
        return FlakyMeta(job="j1")

    async def get(self, resource_meta: FlakyMeta, **kwargs: Any) -> Resource:
        if Flaky.failure is not None:
            raise Flaky.failure
        return Resource(phase=TaskExecution.RUNNING, message="working")

    async def delete(self, resource_meta: FlakyMeta, **kwargs: Any) -> None:
        return None


@pytest.fixture
def flaky(registry: ConnectorRegistry) -> Iterator[ConnectorRegistry]:
    Flaky.failure = None
    registry.register(Flaky())
    yield registry
    Flaky.failure = None


async def test_the_daemon_answers_the_last_phase_then_the_error(
        flaky: ConnectorRegistry) -> None:
    from connector_cli.run.task_files import make_template

    async with serve_in_background(flaky, get_error_grace=0.5, metrics_port=0) as daemon:
        client = daemon.client
        meta = await client.create(make_template("flaky"), "/tmp/out")
        Flaky.failure = ConnectionResetError("upstream reset")
        with pytest.raises(RemoteError) as never_seen:  # no phase known here yet
            await client.get(("flaky", 0), meta)
        Flaky.failure = None
        assert (await client.get(("flaky", 0), meta)).phase == TaskExecution.RUNNING
        Flaky.failure = ConnectionResetError("upstream reset")
        shielded = await client.get(("flaky", 0), meta)
        await asyncio.sleep(0.6)
        with pytest.raises(RemoteError) as late:
            await client.get(("flaky", 0), meta)
        Flaky.failure = ValueError("a permanent problem")
        with pytest.raises(RemoteError) as permanent:
            await client.get(("flaky", 0), meta)
        scrape = await asyncio.to_thread(_scrape, daemon.metrics_url)
    assert never_seen.value.code == late.value.code == "UNAVAILABLE"
    assert shielded.phase == TaskExecution.RUNNING
    assert "ConnectionResetError: upstream reset" in shielded.message
    assert permanent.value.code == "INTERNAL"
    assert 'flyte_connector_get_shielded_total{task_type="flaky"} 1.0' in scrape


def _scrape(url: Any) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


# -- flyteplugins-databricks through an HTTP 503 ------------------------------------------

databricks = pytest.importorskip("flyteplugins.databricks", reason="needs the flyte-test extra")

from tests.fixtures.fake_databricks import TOKEN, FakeDatabricks  # noqa: E402
from tests.helpers.flyte_support import Stubs, start_ours, write_pki  # noqa: E402


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_pki(tmp_path_factory.mktemp("pki"))


async def test_databricks_answers_through_a_503(pki: dict[str, Path], tmp_path: Path) -> None:
    from flyteidl2.core.tasks_pb2 import TaskTemplate
    from google.protobuf.json_format import ParseDict

    from tests.fixtures.fake_databricks import databricks_template

    fake = FakeDatabricks(pki["server"], pki["server_key"]).start()
    secrets = {"databricks_token": TOKEN}
    daemon = start_ours(tmp_path, "--plugins", "databricks", SSL_CERT_FILE=str(pki["ca"]))
    try:
        async with Stubs(daemon.address) as stubs:
            template = ParseDict(databricks_template(fake.instance), TaskTemplate())
            meta = await stubs.create(template, secrets=secrets)
            first = await stubs.get("databricks", meta, secrets)
            fake.unavailable = True
            during = [await stubs.get("databricks", meta, secrets) for _ in range(6)]
            fake.unavailable = False
            after = [await stubs.get("databricks", meta, secrets) for _ in range(2)]
    finally:
        log = daemon.stop()
        fake.stop()
    assert first.phase == TaskExecution.QUEUED
    assert {r.phase for r in during} == {TaskExecution.QUEUED}
    assert "Service Unavailable" in during[0].message
    assert [r.phase for r in after] == [TaskExecution.RUNNING, TaskExecution.SUCCEEDED]
    assert TOKEN not in log
    assert grpc.StatusCode.UNAVAILABLE.name not in log  # no error went out
