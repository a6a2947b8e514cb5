"""The run loop behind `flyte-connector test` (connector_cli.run.runner), without the CLI.

Real connectors (tests/fixtures/connectors/run_jobs.py) run in-process and on a real
daemon (`serve_in_background`); both targets must give the same result.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, Optional

import pytest
from flyteidl2.core.tasks_pb2 import TaskTemplate

from connector_cli.discovery import discover
from connector_cli.errors import ConnectorNotFound, LiteralError, UsageError
from connector_cli.literals import json_to_inputs
from connector_cli.run.request import execution_metadata
from connector_cli.run.runner import Run, next_poll_delay
from connector_cli.run.secret_sources import connection_for
from connector_cli.run.targets import DaemonTarget, InProcessTarget
from connector_cli.run.task_files import load_task
from connector_cli.run.types import PollUpdate, RunObserver, RunOptions, RunRequest
from connector_cli.sdk.registry import ConnectorRegistry
from connector_cli.testing import serve_in_background
from tests.conftest import CONNECTORS, JOB_TASK


@pytest.fixture
def jobs(registry: ConnectorRegistry, monkeypatch: pytest.MonkeyPatch) -> ConnectorRegistry:
    monkeypatch.syspath_prepend(str(CONNECTORS))
    report = discover(registry, modules=["run_jobs"], plugins=())
    assert not report.failed, report.failed
    return registry


class Recorder(RunObserver):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def created(self, resource_meta: bytes) -> None:
        self.events.append(("created", json.loads(resource_meta)))

    def polled(self, update: PollUpdate) -> None:
        self.events.append(("polled", update))

    def log_lines(self, lines: list[str]) -> None:
        self.events.append(("logs", lines))

    def note(self, text: str) -> None:
        self.events.append(("note", text))

    def deleting(self, reason: str) -> None:
        self.events.append(("deleting", reason))

    def deleted(self, error: Optional[str]) -> None:
        self.events.append(("deleted", error))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


def job_request(tmp_path: Path, secrets: Optional[dict[str, str]] = None, **values: Any) -> RunRequest:
    task = load_task(JOB_TASK)
    return RunRequest(
        template=task.template,
        inputs=json_to_inputs(values, task.template.interface, task.defaults),
        output_prefix=str(tmp_path / "out"),
        task_execution_metadata=execution_metadata(task.template, "local-test"),
        connection=connection_for(task.template, secrets or {}),
    )


async def run_job(target: Any, request: RunRequest, **options: Any) -> tuple[Any, Recorder]:
    recorder = Recorder()
    options.setdefault("poll_interval", 0.05)
    result = await Run(target, request, RunOptions(**options), recorder).execute()
    return result, recorder


# --- the loop -----------------------------------------------------------------------


def test_poll_delay_backs_off_gently_after_a_minute_and_is_capped() -> None:
    options = RunOptions(poll_interval=1.0)
    assert next_poll_delay(options, 1.0, elapsed=30, changed=False) == 1.0
    delays, delay = [], 1.0
    for _ in range(20):
        delay = next_poll_delay(options, delay, elapsed=90, changed=False)
        delays.append(delay)
    assert delays[0] == pytest.approx(1.2) and delays == sorted(delays) and delays[-1] == 15.0
    assert next_poll_delay(options, 15.0, elapsed=90, changed=True) == 1.0
    with pytest.raises(UsageError):
        RunOptions(poll_interval=0)


async def test_success_in_process(jobs: ConnectorRegistry, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    request = job_request(tmp_path, seconds=0.15, record=str(record))
    result, recorder = await run_job(InProcessTarget(jobs), request, logs="end", metrics=True)
    assert result.status == "succeeded" and result.exit_code == 0
    assert result.phase == "SUCCEEDED" and result.message == "done"
    assert result.output_values == {"answer": 42, "job_id": recorder.events[0][1]["job_id"]}
    assert [link.uri for link in result.log_links] == [
        f"https://jobs.example.com/{result.output_values['job_id']}"]
    assert result.custom_info == {"job_id": result.output_values["job_id"], "cluster": "c1"}
    assert result.polls >= 2 and result.logs[0] == "line 0" and len(result.logs) >= 2
    assert result.metrics == [{"metric": "cpu", "data": {"values": [1.0, 2.0, 3.0], "queries": []}}]
    assert "deleting" not in recorder.kinds() and not result.deleted
    lines = record.read_text().splitlines()
    assert lines[0].startswith("create job-") and "execution=local-test" in lines[0]
    assert f"prefix={tmp_path / 'out'}" in lines[0]
    polls = [e for k, e in recorder.events if k == "polled"]
    assert [p.phase_changed for p in polls] == [True] + [False] * (len(polls) - 2) + [True]
    assert len(polls[0].new_log_links) == 1 and all(not p.new_log_links for p in polls[1:])


async def test_timeout_deletes_the_job(jobs: ConnectorRegistry, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    request = job_request(tmp_path, outcome="hang", record=str(record))
    started = time.monotonic()
    result, recorder = await run_job(InProcessTarget(jobs), request, timeout=0.3)
    assert time.monotonic() - started < 2
    assert result.status == "timed_out" and result.exit_code == 3 and result.phase == "RUNNING"
    assert result.deleted and recorder.kinds()[-2:] == ["deleting", "deleted"]
    assert record.read_text().splitlines()[-1] == f"delete {json.loads(result.resource_meta)['job_id']}"


async def test_keep_leaves_the_job_running(jobs: ConnectorRegistry, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    request = job_request(tmp_path, outcome="hang", record=str(record))
    result, recorder = await run_job(InProcessTarget(jobs), request, timeout=0.2, keep=True)
    assert result.status == "timed_out" and not result.deleted
    assert "delete" not in record.read_text() and ("note", "--keep: not deleting the job; it may still be running") in recorder.events


async def test_interrupt_stops_polling_and_deletes(jobs: ConnectorRegistry, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    run = Run(InProcessTarget(jobs), job_request(tmp_path, outcome="hang", record=str(record)),
              RunOptions(poll_interval=5.0), Recorder())
    task = asyncio.ensure_future(run.execute())
    while not record.exists():
        await asyncio.sleep(0.01)
    run.interrupt()
    result = await asyncio.wait_for(task, 2)
    assert result.status == "interrupted" and result.exit_code == 130 and result.deleted
    assert record.read_text().splitlines()[-1].startswith("delete job-")


async def test_interrupt_during_create_waits_for_it_then_deletes(jobs: ConnectorRegistry, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    request = job_request(tmp_path, outcome="slow-create", seconds=0.3, record=str(record))
    recorder = Recorder()
    run = Run(InProcessTarget(jobs), request, RunOptions(poll_interval=0.05), recorder)
    task = asyncio.ensure_future(run.execute())
    while not record.exists():
        await asyncio.sleep(0.01)
    run.interrupt()
    result = await asyncio.wait_for(task, 3)
    assert result.status == "interrupted" and result.deleted and result.polls == 0
    assert [line.split()[0] for line in record.read_text().splitlines()] == ["creating", "create", "delete"]
    assert ("note", "waiting for create to return, to delete its job") in recorder.events


async def test_blocking_sync_get_still_times_out_and_deletes(jobs: ConnectorRegistry, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    template = TaskTemplate(type="sync-job")
    request = RunRequest(template, json_to_inputs({"outcome": "block", "record": str(record)}, None),
                         str(tmp_path), execution_metadata(template), connection_for(template, {}))
    started = time.monotonic()
    result, _ = await run_job(InProcessTarget(jobs), request, timeout=0.3)
    assert result.status == "timed_out" and result.deleted and time.monotonic() - started < 3
    assert record.read_text().splitlines() == ["create sync-1", "delete sync-1"]


async def test_connector_errors(jobs: ConnectorRegistry, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    result, recorder = await run_job(InProcessTarget(jobs),
                                     job_request(tmp_path, outcome="raise-create", record=str(record)))
    assert result.status == "error" and result.exit_code == 1 and result.resource_meta is None
    assert result.error == "JobConnector.create failed: RuntimeError: the job service refused the job"
    assert isinstance(result.exception, RuntimeError) and "deleting" not in recorder.kinds()
    result, recorder = await run_job(InProcessTarget(jobs),
                                     job_request(tmp_path, outcome="raise-get", record=str(record)))
    assert result.status == "error" and result.error.startswith("JobConnector.get failed: ValueError: lost track of job-")
    assert result.deleted and record.read_text().splitlines()[-1].startswith("delete job-")


async def test_failed_gets_are_tolerated_like_the_backend_then_the_job_is_deleted(
        jobs: ConnectorRegistry, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    result, recorder = await run_job(InProcessTarget(jobs),
                                     job_request(tmp_path, outcome="flaky-get", seconds=5, record=str(record)))
    assert (result.status, result.phase, result.output_values["answer"]) == ("succeeded", "SUCCEEDED", 42)
    notes = [text for kind, text in recorder.events if kind == "note"]
    assert len(notes) == 5 and notes[-1].startswith("JobConnector.get failed (transient upstream error): "
                                                    "the job service answered 503 for job-")
    assert notes[-1].endswith("; polling again (failed get 5 of 5 tolerated)")
    assert not result.deleted
    result, _ = await run_job(InProcessTarget(jobs),
                              job_request(tmp_path, outcome="flaky-get", seconds=6, record=str(record)))
    assert result.status == "error" and result.deleted and "answered 503" in result.error
    assert record.read_text().splitlines()[-1].startswith("delete job-")
    assert [line.split()[0] for line in record.read_text().splitlines()[-8:]] == ["create", *["get"] * 6, "delete"]
    result, _ = await run_job(InProcessTarget(jobs), job_request(tmp_path, outcome="flaky-get", seconds=1),
                              get_failures=0)
    assert result.status == "error" and result.deleted


async def test_a_transient_error_is_unavailable_over_the_wire_and_tolerated(
        jobs: ConnectorRegistry, tmp_path: Path) -> None:
    import grpc
    from flyteidl2.connector import connector_pb2 as pb
    from flyteidl2.connector.service_pb2_grpc import AsyncConnectorServiceStub
    from flyteidl2.core.execution_pb2 import TaskExecution

    from connector_cli.errors import RemoteError

    async with serve_in_background(jobs) as daemon:
        target = DaemonTarget(daemon.address)
        try:
            result, _ = await run_job(target, job_request(tmp_path, outcome="flaky-get", seconds=2))
            assert result.status == "succeeded"
            created = await target.create(job_request(tmp_path, outcome="flaky-get", seconds=1))
            with pytest.raises(RemoteError, match=r"^UNAVAILABLE: get for task type 'job' failed \(transient "
                                                  r"upstream error\): the job service answered 503 for job-"):
                await target.get(job_request(tmp_path), created)
            created = await target.create(job_request(tmp_path, outcome="flaky-get", seconds=1))
        finally:
            await target.close()
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            stub = AsyncConnectorServiceStub(channel)
            request = pb.GetTaskRequest(task_category=pb.TaskCategory(name="job"), resource_meta=created)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetTask(request)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert (await stub.GetTask(request)).resource.phase == TaskExecution.SUCCEEDED


async def test_failed_aborted_and_missing_outputs(jobs: ConnectorRegistry, tmp_path: Path) -> None:
    target = InProcessTarget(jobs)
    result, _ = await run_job(target, job_request(tmp_path, outcome="fail"))
    assert (result.status, result.exit_code, result.message) == ("failed", 1, "the job ran out of memory")
    result, _ = await run_job(target, job_request(tmp_path, outcome="abort"))
    assert (result.status, result.phase) == ("aborted", "ABORTED") and not result.deleted
    result, _ = await run_job(target, job_request(tmp_path, outcome="no-outputs"))
    assert result.status == "failed" and "Flyte would fail this task" in result.error


async def test_missing_outputs_are_read_from_outputs_pb(jobs: ConnectorRegistry, tmp_path: Path) -> None:
    from connector_cli.literals import outputs_to_proto

    request = job_request(tmp_path, outcome="no-outputs")
    Path(request.output_prefix).mkdir()
    written = outputs_to_proto({"answer": 7, "job_id": "from-file"}, request.template.interface)
    (Path(request.output_prefix) / "outputs.pb").write_bytes(written.SerializeToString())
    result, _ = await run_job(InProcessTarget(jobs), request)
    assert result.status == "succeeded" and result.output_values == {"answer": 7, "job_id": "from-file"}


async def test_following_logs_never_repeats_a_line(jobs: ConnectorRegistry, tmp_path: Path) -> None:
    request = job_request(tmp_path, seconds=0.6)
    result, recorder = await run_job(InProcessTarget(jobs), request, logs="follow")
    batches = [lines for kind, lines in recorder.events if kind == "logs"]
    assert len(batches) > 1
    assert result.logs == [f"line {i}" for i in range(len(result.logs))] and len(result.logs) >= 6


async def test_unknown_task_type_names_the_closest(jobs: ConnectorRegistry, tmp_path: Path) -> None:
    request = job_request(tmp_path)
    request = RunRequest(TaskTemplate(type="jbo"), None, "/tmp", request.task_execution_metadata,
                         request.connection)
    with pytest.raises(ConnectorNotFound, match=r"'jbo' v0 \(did you mean 'job'\?\); served: job v0, sync-job v0"):
        await run_job(InProcessTarget(jobs), request)


def test_inputs_that_do_not_match_the_interface_name_the_input() -> None:
    task = load_task(JOB_TASK)
    with pytest.raises(LiteralError, match="input 'seconds'"):
        json_to_inputs({"seconds": "soon"}, task.template.interface, task.defaults)


async def test_remote_target_gives_the_same_result(jobs: ConnectorRegistry, tmp_path: Path) -> None:
    request = job_request(tmp_path, seconds=0.1, secrets={"api_key": "k3y-value"})
    local, _ = await run_job(InProcessTarget(jobs), request, logs="end", metrics=True)
    async with serve_in_background(jobs) as daemon:
        remote_target = DaemonTarget(daemon.address)
        try:
            remote, _ = await run_job(remote_target, request, logs="end", metrics=True)
        finally:
            await remote_target.close()
    for field in ("status", "phase", "message", "metrics"):
        assert getattr(remote, field) == getattr(local, field), field
    assert remote.custom_info == {**local.custom_info, "job_id": remote.output_values["job_id"]}
    assert remote.output_values["answer"] == local.output_values["answer"] == 42
    assert remote.logs[:2] == local.logs[:2] == ["line 0", "line 1"]
    assert json.loads(remote.resource_meta)["api_key_seen"] is True


async def test_remote_errors_timeout_and_unknown_type(jobs: ConnectorRegistry, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    async with serve_in_background(jobs) as daemon:
        target = DaemonTarget(daemon.address)
        try:
            result, _ = await run_job(target, job_request(tmp_path, outcome="hang", record=str(record)),
                                      timeout=0.3)
            assert result.status == "timed_out" and result.deleted
            assert record.read_text().splitlines()[-1].startswith("delete job-")
            result, _ = await run_job(target, job_request(tmp_path, outcome="raise-get"))
            assert result.status == "error" and "lost track of job-" in result.error and result.deleted
            bad = RunRequest(TaskTemplate(type="jbo"), None, "/tmp",
                             execution_metadata(TaskTemplate(type="jbo")), connection_for(TaskTemplate(), {}))
            with pytest.raises(ConnectorNotFound, match=r"did you mean 'job'\?\); the daemon at 127.0.0.1:\d+ serves: job v0"):
                await run_job(target, bad)
        finally:
            await target.close()
