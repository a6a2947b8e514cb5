"""The same connectors on the Flyte SDK's own server (`c0`) and on `flyte-connector serve`,
the same requests to both: the answers agree except where docs/migrating-from-flyte.md
names a deliberate difference (UNDEFINED is reported as QUEUED)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest

pytest.importorskip("flyteplugins.databricks", reason="needs the flyte-test extra")

from flyteidl2.core.execution_pb2 import TaskExecution
from flyteidl2.core.tasks_pb2 import TaskTemplate
from google.protobuf.json_format import MessageToDict, ParseDict

from connector_cli.literals import FlyteDirectory, FlyteFile, StructuredDataset
from connector_cli.testing import make_inputs, make_template
from tests.fixtures.fake_databricks import TOKEN, FakeDatabricks, databricks_template
from tests.helpers.flyte_support import Process, Stubs, start_c0, start_ours, write_pki

SECRET = "s3cr3t-counter-key"
FLYTE_ONLY = {TaskExecution.UNDEFINED: TaskExecution.QUEUED}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def daemons(pki: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[FakeDatabricks, Process, Process]]:
    """The fake Databricks, `c0` and `flyte-connector serve`, shared by this module."""
    tmp = tmp_path_factory.mktemp("daemons")
    fake = FakeDatabricks(pki["server"], pki["server_key"]).start()
    env = {"SSL_CERT_FILE": str(pki["ca"])}
    started: list[Process] = []
    try:
        started.append(start_c0(tmp, "--modules", "flyte_style", **env))
        started.append(start_ours(tmp, "--plugins", "databricks", "--modules", "flyte_style",
                                  **env))
        yield fake, started[0], started[1]
    finally:
        for daemon in started:
            log = daemon.stop()
            assert TOKEN not in log and SECRET not in log
        fake.stop()


@pytest.fixture
async def servers(daemons: tuple[FakeDatabricks, Process, Process]
                  ) -> AsyncIterator[tuple[Any, ...]]:
    fake, c0, ours = daemons
    async with Stubs(c0.address) as theirs, Stubs(ours.address) as mine:
        yield fake, theirs, mine


def same(ours: Any, theirs: Any) -> None:
    """Resources agree: phase (up to the documented UNDEFINED), message, links, outputs,
    custom info."""
    assert ours.phase == FLYTE_ONLY.get(theirs.phase, theirs.phase)
    assert ours.message == theirs.message
    assert list(ours.log_links) == list(theirs.log_links)
    assert ours.outputs == theirs.outputs
    assert MessageToDict(ours.custom_info) == MessageToDict(theirs.custom_info)


async def test_listed_connectors_agree(servers: tuple[Any, ...]) -> None:
    _, theirs, mine = servers
    listed_theirs, listed_mine = await theirs.list(), await mine.list()
    assert set(listed_mine) <= set(listed_theirs)
    for name in ("Counter Connector", "Sleepy Connector", "Frame Connector",
                 "Inputs Connector", "Databricks Connector"):
        assert listed_mine[name] == listed_theirs[name]


async def test_a_flyte_style_connector_answers_the_same(servers: tuple[Any, ...]) -> None:
    _, theirs, mine = servers
    template = make_template("flyte_counter", inputs={"n": int, "label": str})
    inputs = make_inputs(template, {"n": 7, "label": "diff"})
    connection = {"secrets": {"api_key": SECRET}, "configs": {"region": "us"}}
    meta_theirs = await theirs.create(template, inputs, **connection)
    meta_mine = await mine.create(template, inputs, **connection)
    assert meta_mine == meta_theirs
    phases = []
    for _ in range(3):
        got_theirs = await theirs.get("flyte_counter", meta_mine)
        got_mine = await mine.get("flyte_counter", meta_theirs)
        same(got_mine, got_theirs)
        phases.append(got_theirs.phase)
    assert phases == [TaskExecution.UNDEFINED, TaskExecution.RUNNING, TaskExecution.SUCCEEDED]
    logs_theirs = await theirs.logs("flyte_counter", meta_mine)
    assert await mine.logs("flyte_counter", meta_theirs) == logs_theirs
    metrics_theirs = await theirs.metrics("flyte_counter", meta_mine)
    assert metrics_theirs.results[0].metric == "count"
    assert await mine.metrics("flyte_counter", meta_theirs) == metrics_theirs
    frame = make_template("flyte_frame", inputs={"rows": int})
    frame_inputs = make_inputs(frame, {"rows": 5})
    frame_meta = await theirs.create(frame, frame_inputs)
    assert await mine.create(frame, frame_inputs) == frame_meta
    same(await mine.get("flyte_frame", frame_meta), await theirs.get("flyte_frame", frame_meta))
    assert await mine.logs("flyte_frame", frame_meta) == await theirs.logs("flyte_frame",
                                                                            frame_meta)
    failing = make_inputs(template, {"n": -1, "label": "neg"})
    bad = await theirs.create(template, failing, **connection)
    for _ in range(3):
        same(await mine.get("flyte_counter", bad), await theirs.get("flyte_counter", bad))
    await theirs.delete("flyte_counter", meta_mine)
    await mine.delete("flyte_counter", meta_theirs)


async def test_databricks_answers_the_same(servers: tuple[Any, ...]) -> None:
    fake, theirs, mine = servers
    secrets = {"databricks_token": TOKEN}
    cancel = ("POST", "/api/2.1/jobs/runs/cancel")
    cancels = fake.requests.count(cancel)
    for run_name in ("good-run", "fail-run"):
        template = ParseDict(databricks_template(fake.instance, run_name), TaskTemplate())
        meta_theirs = await theirs.create(template, secrets=secrets)
        meta_mine = await mine.create(template, secrets=secrets)
        assert json.loads(meta_mine).keys() == json.loads(meta_theirs).keys()
        phases = []
        for _ in range(3):  # each server polls the run the other one created
            got_mine = await mine.get("databricks", meta_theirs, secrets)
            got_theirs = await theirs.get("databricks", meta_mine, secrets)
            run_theirs, run_mine = (json.loads(m)["run_id"] for m in (meta_theirs, meta_mine))
            assert got_mine.log_links[0].uri.endswith(f"/run/{run_theirs}")
            got_mine.log_links[0].uri = got_mine.log_links[0].uri.replace(run_theirs, run_mine)
            same(got_mine, got_theirs)
            phases.append(got_theirs.phase)
        final = TaskExecution.FAILED if run_name == "fail-run" else TaskExecution.SUCCEEDED
        assert phases == [TaskExecution.UNDEFINED, TaskExecution.RUNNING, final]
        await theirs.delete("databricks", meta_mine, secrets)
        await mine.delete("databricks", meta_theirs, secrets)
    assert fake.requests.count(cancel) == cancels + 4
    assert fake.bad_tokens == 0


async def test_files_directories_and_data_frames_arrive_as_on_c0(
        servers: tuple[Any, ...]) -> None:
    _, theirs, mine = servers
    template = make_template("flyte_inputs", inputs={
        "doc": FlyteFile, "folder": FlyteDirectory, "table": StructuredDataset,
        "when": dt.datetime, "tags": list[str]})
    inputs = make_inputs(template, {
        "doc": "s3://bucket/in.csv", "folder": {"uri": "s3://bucket/work/", "format": ""},
        "table": {"uri": "bq://project.dataset.table", "format": "parquet"},
        "when": "2026-01-02T03:04:05+00:00", "tags": ["a", "b"]})
    meta_theirs = await theirs.create(template, inputs)
    assert await mine.create(template, inputs) == meta_theirs
    seen = json.loads(meta_theirs)["seen"]
    assert seen["doc"] == "flyte.io._file.File:s3://bucket/in.csv"
    assert seen["table"].startswith("flyte.io._dataframe")
