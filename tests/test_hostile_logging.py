"""Issue 28, items 9 and 12: what a caller can make the daemon log.

Item 12: records of the Flyte SDK's own logger (its own handler, `propagate = False`)
bypassed the daemon's handler: a connection secret was printed in clear, and
`--log-format json` and `--log-level` were ignored.
"""

from __future__ import annotations

import json

import grpc
import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.core.security_pb2 import Connection
from flyteidl2.core.tasks_pb2 import TaskTemplate

from tests.helpers.daemon_process import Daemon
from tests.helpers.raw_grpc import raw_call

pytestmark = pytest.mark.timeout(120)
SECRET = "hunter2-flyte-logger-secret"


def chatty_create() -> bytes:
    return pb.CreateTaskRequest(
        template=TaskTemplate(type="flyte_chatty"), output_prefix="/tmp/out",
        connection=Connection(secrets={"api_key": SECRET}),
    ).SerializeToString()


@pytest.mark.parametrize("level,debug_shown", [("info", False), ("debug", True)])
async def test_flyte_sdk_logger_records_are_masked_json_and_follow_the_level(
        level: str, debug_shown: bool) -> None:
    pytest.importorskip("flyte")
    daemon = Daemon("-m", "flyte_logging", "--log-format", "json", "--log-level", level)
    address = daemon.wait_ready()
    try:
        code, details = await raw_call(address, "CreateTask", chatty_create())
    finally:
        daemon.proc.terminate()
        _, log = daemon.finish()
    assert code == grpc.StatusCode.OK, details
    assert SECRET not in log
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert len(records) == len(log.strip().splitlines()), log[-2000:]
    flyte = [r for r in records if r["logger"] == "flyte"]
    messages = [r["message"] for r in flyte]
    assert "connecting with key ****" in messages and "again with key ****" in messages, log
    assert ("debug line with key ****" in messages) is debug_shown
    late = [r["message"] for r in records if r["logger"] == "late_library"]
    assert late == ["late logger with key ****"], log[-2000:]


async def test_a_nul_in_output_prefix_is_invalid_argument_without_a_traceback() -> None:
    body = pb.CreateTaskRequest(template=TaskTemplate(type="echo"),
                                output_prefix="/tmp/a\0b").SerializeToString()
    daemon = Daemon()
    address = daemon.wait_ready()
    try:
        results = [await raw_call(address, "CreateTask", body) for _ in range(3)]
    finally:
        daemon.proc.terminate()
        _, log = daemon.finish()
    assert {code for code, _ in results} == {grpc.StatusCode.INVALID_ARGUMENT}, results
    assert "NUL" in results[0][1]
    assert "Traceback" not in log


async def test_repeated_connector_failures_log_one_line_each_and_one_traceback() -> None:
    body = pb.CreateTaskRequest(template=TaskTemplate(type="boom")).SerializeToString()
    daemon = Daemon()
    address = daemon.wait_ready()
    try:
        results = [await raw_call(address, "CreateTask", body) for _ in range(40)]
    finally:
        daemon.proc.terminate()
        _, log = daemon.finish()
    assert {code for code, _ in results} == {grpc.StatusCode.INTERNAL}
    failures = [line for line in log.splitlines() if "create for task type 'boom' failed" in line]
    assert len(failures) == 40, log[-3000:]
    assert log.count("Traceback") == 1
    assert all("RuntimeError" in line for line in failures)


async def test_a_forged_flyte_sdk_meta_is_internal_with_one_traceback_a_minute() -> None:
    """Item 19: a forged but well-formed meta of a connector that does not sign reaches
    the connector; its failure is INTERNAL (docs/serve.md says so), logged one line per
    call and one traceback."""
    pytest.importorskip("flyte")
    import json as _json

    body = pb.GetTaskRequest(
        task_category=pb.TaskCategory(name="flyte_chatty"),
        resource_meta=_json.dumps({"job": "forged"}).encode(),
    ).SerializeToString()
    daemon = Daemon("-m", "flyte_logging")
    address = daemon.wait_ready()
    try:
        results = [await raw_call(address, "GetTask", body) for _ in range(10)]
    finally:
        daemon.proc.terminate()
        _, log = daemon.finish()
    assert {code for code, _ in results} == {grpc.StatusCode.INTERNAL}, results[0]
    assert "LookupError" in results[0][1]
    assert log.count("Traceback") == 1
    assert len([line for line in log.splitlines() if "LookupError" in line]) >= 10
