"""The same flytekit connectors on flytekit's own server (`pyflyte serve connector`, wrapped
to bind loopback only) and on `flyte-connector serve`, the same Flyte 1 requests to both:
the answers agree except where docs/migrating-from-flytekit.md names a difference."""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest

pytest.importorskip("flytekit.extend.backend.base_connector", reason="needs the flytekit extra")

import grpc
from flyteidl.admin import agent_pb2 as v1
from flyteidl2.core.execution_pb2 import TaskExecution
from google.protobuf.json_format import MessageToDict

from tests.helpers.flyte1_support import (
    V1Stubs,
    start_ours_v1,
    start_pyflyte,
    v1_inputs,
    v1_template,
)
from tests.helpers.flyte_support import Process

TOKEN = "kit-t0ken-value"
ENV = {"_FSEC_KIT_TOKEN": TOKEN}


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Process, Process]]:
    """flytekit's server and ours, serving tests/fixtures/connectors/flytekit_style.py."""
    tmp = tmp_path_factory.mktemp("daemons")
    started: list[Process] = []
    try:
        started.append(start_pyflyte(tmp, "--modules", "flytekit_style", **ENV))
        started.append(start_ours_v1(tmp, "--plugins", "flytekit", "--modules",
                                     "flytekit_style", **ENV))
        yield started[0], started[1]
    finally:
        for daemon in started:
            assert TOKEN not in daemon.stop()


@pytest.fixture
async def stubs(daemons: tuple[Process, Process]) -> AsyncIterator[tuple[V1Stubs, V1Stubs]]:
    kit, ours = daemons
    async with V1Stubs(kit.address) as theirs, V1Stubs(ours.address) as mine:
        yield theirs, mine


def comparable(resource: Any) -> dict:
    """A v1 Resource as data, without the deprecated `state` flytekit leaves unset (0,
    which older propellers read as RETRYABLE_FAILURE; ours fills it from the phase)."""
    data = MessageToDict(resource)
    data.pop("state", None)
    return data


async def test_both_list_the_same_agents(stubs: tuple[V1Stubs, V1Stubs]) -> None:
    theirs, mine = stubs
    assert await mine.agents() == await theirs.agents()


async def test_same_phases_messages_links_outputs_and_each_others_metas(
        stubs: tuple[V1Stubs, V1Stubs]) -> None:
    theirs, mine = stubs
    template = v1_template("kit_counter", inputs={"n": "int", "label": "str"},
                           outputs={"total": "int", "label": "str"})
    for n, label in ((3, "abc"), (-1, "neg")):
        their_meta = await theirs.create(template, v1_inputs(n=n, label=label))
        my_meta = await mine.create(template, v1_inputs(n=n, label=f"{label}"))
        assert my_meta == their_meta  # flytekit's own ResourceMeta encoding, byte for byte
        # each server polls the meta the other one created
        answers = [(await mine.get("kit_counter", their_meta),
                    await theirs.get("kit_counter", my_meta)) for _ in range(2)]
        for mine_said, theirs_said in answers:
            assert comparable(mine_said) == comparable(theirs_said)
        assert [m.phase for m, _ in answers] == [
            TaskExecution.RUNNING, TaskExecution.SUCCEEDED if n > 0 else TaskExecution.FAILED]
        assert [m.state for m, _ in answers] == [
            v1.RUNNING, v1.SUCCEEDED if n > 0 else v1.PERMANENT_FAILURE]
        assert [t.state for _, t in answers] == [0, 0]
        await mine.delete("kit_counter", their_meta)
        await theirs.delete("kit_counter", my_meta)
    done = answers[0][0]
    assert done.log_links[0].uri.startswith("https://kit.example/")


async def test_same_metrics_and_status_codes(stubs: tuple[V1Stubs, V1Stubs]) -> None:
    theirs, mine = stubs
    template = v1_template("kit_counter", inputs={"n": "int", "label": "str"})
    meta = await theirs.create(template, v1_inputs(n=2, label="m"))
    request = v1.GetTaskMetricsRequest(task_category=v1.TaskCategory(name="kit_counter"),
                                       resource_meta=meta, queries=["count"])
    assert await mine.tasks.GetTaskMetrics(request) == await theirs.tasks.GetTaskMetrics(request)
    codes = []
    for stub in (theirs, mine):
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.get("no_such_type", meta)
        codes.append(missing.value.code())
    assert codes == [grpc.StatusCode.NOT_FOUND] * 2


async def test_logs_flytekit_declares_as_a_stream(stubs: tuple[V1Stubs, V1Stubs]) -> None:
    """flytekit's GetTaskLogs returns its one response from a coroutine where gRPC expects a
    stream, so its callers get no page; ours sends the response as the stream's one page
    (a difference the migration guide names)."""
    theirs, mine = stubs
    template = v1_template("kit_counter", inputs={"n": "int", "label": "str"})
    meta = await mine.create(template, v1_inputs(n=5, label="logs"))
    request = v1.GetTaskLogsRequest(task_category=v1.TaskCategory(name="kit_counter"),
                                    resource_meta=meta)
    their_pages = []
    try:
        their_pages = [p async for p in theirs.tasks.GetTaskLogs(request, timeout=10)]
    except grpc.aio.AioRpcError:
        pass
    my_pages = [p async for p in mine.tasks.GetTaskLogs(request, timeout=10)]
    assert their_pages == []
    assert [line.message for line in my_pages[0].body.structured_lines] == ["counted to 5"]
    assert list(my_pages[0].body.results) == ["counted to 5"]


def test_ours_took_pyflytes_command_line(daemons: tuple[Process, Process]) -> None:
    _, ours = daemons
    log = ours.text()
    assert "listening on 127.0.0.1:" in log and "Flyte 1 and Flyte 2 APIs" in log
    assert Path(ours.log).exists()
