"""Signed resource meta: the daemon refuses handles it did not issue (issue 15, item 1).

Real daemons on 127.0.0.1:0 called with the generated stubs. A connector that asks for
signing records every call it gets, so "nothing done" is checked by what it saw. The
first test is the reported attack on the real shell plugin: a forged DeleteTask naming a
process this test started must leave it alive.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator

import grpc
import grpc.aio
import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector.service_pb2_grpc import AsyncConnectorServiceStub
from flyteidl2.core.execution_pb2 import TaskExecution
from flyteidl2.core.tasks_pb2 import TaskTemplate

from connector_cli import AsyncConnector, Resource, ResourceMeta
from connector_cli.errors import RegistrationError, StartupError
from connector_cli.sdk.registry import ConnectorRegistry
from connector_cli.signing import (
    KEY_FILE_NAME,
    MetaSigner,
    load_signer,
    read_key,
    unsigned_payload,
)
from connector_cli.testing import serve_in_background
from tests.conftest import cli_env

Code = grpc.StatusCode
FLYTE_CONNECTOR = str(Path(sys.executable).with_name("flyte-connector"))


@dataclasses.dataclass
class JobMeta(ResourceMeta):
    job: str
    pid: int = 0


class Recording(AsyncConnector):
    """Signs its metas; remembers every call that reached it."""

    task_type_name = "signed"
    metadata_type = JobMeta
    sign_resource_meta = True

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def create(self, task_template: Any, output_prefix: str, **kwargs: Any) -> JobMeta:
        self.calls.append(("create", None))
        return JobMeta(job="j-1", pid=os.getpid())

    async def get(self, resource_meta: JobMeta, **kwargs: Any) -> Resource:
        self.calls.append(("get", resource_meta))
        return Resource(TaskExecution.SUCCEEDED)

    async def delete(self, resource_meta: JobMeta, **kwargs: Any) -> None:
        self.calls.append(("delete", resource_meta))

    async def get_logs(self, resource_meta: JobMeta, **kwargs: Any) -> Any:
        self.calls.append(("get_logs", resource_meta))
        return pb.GetTaskLogsResponse(body=pb.GetTaskLogsResponseBody(results=["x"]))

    async def get_metrics(self, resource_meta: JobMeta, **kwargs: Any) -> Any:
        self.calls.append(("get_metrics", resource_meta))
        return pb.GetTaskMetricsResponse()


class OtherSigned(Recording):
    task_type_name = "other"


class Plain(AsyncConnector):
    """Does not ask for signing: its metas must stay exactly `meta.encode()`."""

    task_type_name = "plain"
    metadata_type = JobMeta

    async def create(self, task_template: Any, output_prefix: str, **kwargs: Any) -> JobMeta:
        return JobMeta(job="plain-1", pid=7)

    async def get(self, resource_meta: JobMeta, **kwargs: Any) -> Resource:
        return Resource(TaskExecution.SUCCEEDED, message=resource_meta.job)

    async def delete(self, resource_meta: JobMeta, **kwargs: Any) -> None:
        return None


def key_file(tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    path.write_text(os.urandom(32).hex() + "\n")
    return str(path)


def registry_of(*connectors: AsyncConnector) -> ConnectorRegistry:
    registry = ConnectorRegistry()
    for connector in connectors:
        registry.register(connector)
    return registry


async def code_of(call: Any) -> tuple[Code, str]:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return Code.OK, ""


async def create(stub: AsyncConnectorServiceStub, task_type: str) -> bytes:
    reply = await stub.CreateTask(pb.CreateTaskRequest(template=TaskTemplate(type=task_type)))
    return bytes(reply.resource_meta)


def every_call(task_type: str, meta: bytes) -> list[Any]:
    category = pb.TaskCategory(name=task_type)
    return [
        ("get", lambda s: s.GetTask(pb.GetTaskRequest(task_category=category, resource_meta=meta))),
        ("delete", lambda s: s.DeleteTask(
            pb.DeleteTaskRequest(task_category=category, resource_meta=meta))),
        ("get_metrics", lambda s: s.GetTaskMetrics(
            pb.GetTaskMetricsRequest(task_category=category, resource_meta=meta))),
        ("get_logs", lambda s: _drain(s.GetTaskLogs(
            pb.GetTaskLogsRequest(task_category=category, resource_meta=meta)))),
    ]


async def _drain(stream: Any) -> list[Any]:
    return [m async for m in stream]


@pytest.fixture
async def wire(tmp_path: Path) -> AsyncIterator[Any]:
    signed, other = Recording(), OtherSigned()
    registry = registry_of(signed, other, Plain())
    key = key_file(tmp_path, "current.key")
    async with serve_in_background(registry, meta_key_file=key) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            yield AsyncConnectorServiceStub(channel), signed, other, key


# ------------------------------------------------------------------ the reported attack

def _start_ticks(pid: int) -> int:
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    return int(raw[raw.rindex(b")") + 2:].split()[19])


async def test_a_forged_shell_delete_does_not_signal_the_process_it_names(tmp_path: Path) -> None:
    """The issue's first finding, end to end: pid, start ticks and boot id of a process
    this test started, sent as a DeleteTask; the process must survive."""
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                              start_new_session=True)
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        forged = json.dumps({
            "pid": victim.pid, "start_ticks": _start_ticks(victim.pid), "boot_id": boot,
            "job_dir": str(tmp_path), "outputs": {}, "exit_code_output": True, "grace": 0.0,
        }, sort_keys=True, separators=(",", ":")).encode()
        async with serve_in_background(plugins=["shell"]) as daemon:
            async with grpc.aio.insecure_channel(daemon.address) as channel:
                stub = AsyncConnectorServiceStub(channel)
                code, detail = await code_of(stub.DeleteTask(pb.DeleteTaskRequest(
                    task_category=pb.TaskCategory(name="shell"), resource_meta=forged)))
        assert code == Code.INVALID_ARGUMENT, detail
        assert "not a signed handle" in detail
        time.sleep(0.2)
        assert victim.poll() is None, "the forged delete killed a process it does not own"
        assert not (tmp_path / "deleted").exists(), "nothing may be written either"
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)


# ------------------------------------------------------------------ the wrapper

async def test_signed_metas_round_trip_and_carry_the_connectors_own_bytes(wire: Any) -> None:
    stub, signed, _other, _key = wire
    meta = await create(stub, "signed")
    assert meta.startswith(b"fcm1.")
    assert JobMeta.decode(unsigned_payload(meta)) == JobMeta(job="j-1", pid=os.getpid())
    for name, call in every_call("signed", meta):
        assert (await code_of(call(stub)))[0] == Code.OK, name
    assert [c[0] for c in signed.calls] == ["create", "get", "delete", "get_metrics", "get_logs"]
    assert all(c[1] == JobMeta(job="j-1", pid=os.getpid()) for c in signed.calls[1:])


async def test_metas_of_connectors_that_do_not_sign_are_byte_identical(wire: Any) -> None:
    stub, *_ = wire
    meta = await create(stub, "plain")
    assert meta == JobMeta(job="plain-1", pid=7).encode()
    reply = await stub.GetTask(pb.GetTaskRequest(task_category=pb.TaskCategory(name="plain"),
                                                 resource_meta=meta))
    assert reply.resource.message == "plain-1"


def _tampered(meta: bytes) -> bytes:
    return meta.replace(b'"pid":', b'"pid":1', 1)


def _flip_mac(meta: bytes) -> bytes:
    cut = meta.index(b".", 5 + 9)
    flipped = b"A" if meta[cut - 1:cut] != b"A" else b"B"
    return meta[:cut - 1] + flipped + meta[cut:]


@pytest.mark.parametrize("forge, expected", [
    (lambda m, key: _tampered(m), "signature does not match"),
    (lambda m, key: _flip_mac(m), "signature does not match"),
    (lambda m, key: m[:40], "not a signed handle"),
    (lambda m, key: m[:-3], "signature does not match"),
    (lambda m, key: unsigned_payload(m), "not a signed handle"),
    (lambda m, key: b"", "not a signed handle"),
    (lambda m, key: MetaSigner(os.urandom(32)).sign("signed", 0, unsigned_payload(m)),
     "key this daemon does not have"),
    (lambda m, key: MetaSigner(read_key(key)).sign("other", 0, unsigned_payload(m)),
     "signature does not match"),
    (lambda m, key: MetaSigner(read_key(key)).sign("signed", 1, unsigned_payload(m)),
     "signature does not match"),
], ids=["tampered", "mac", "truncated-head", "truncated-tail", "unsigned", "empty", "foreign-key",
        "other-task-type", "other-version"])
async def test_forged_metas_are_invalid_argument_and_reach_no_connector(
    wire: Any, forge: Any, expected: str
) -> None:
    stub, signed, _other, key = wire
    meta = await create(stub, "signed")
    signed.calls.clear()
    bad = forge(meta, key)
    for name, call in every_call("signed", bad):
        code, detail = await code_of(call(stub))
        assert code == Code.INVALID_ARGUMENT, (name, code, detail)
        assert expected in detail and len(detail) < 200, detail
    assert signed.calls == []


async def test_a_meta_of_one_signing_connector_is_refused_by_another(wire: Any) -> None:
    stub, signed, other, _key = wire
    meta = await create(stub, "signed")
    for name, call in every_call("other", meta):
        code, detail = await code_of(call(stub))
        assert code == Code.INVALID_ARGUMENT, (name, detail)
    assert other.calls == []


# ------------------------------------------------------------------ keys and rotation

async def test_rotation_accepts_the_previous_key_and_signs_with_the_current(
    tmp_path: Path,
) -> None:
    old, new = key_file(tmp_path, "old.key"), key_file(tmp_path, "new.key")
    async with serve_in_background(registry_of(Recording()), meta_key_file=old) as before:
        async with grpc.aio.insecure_channel(before.address) as channel:
            old_meta = await create(AsyncConnectorServiceStub(channel), "signed")
    connector = Recording()
    async with serve_in_background(registry_of(connector), meta_key_file=new,
                                   previous_meta_key_file=old) as rotating:
        async with grpc.aio.insecure_channel(rotating.address) as channel:
            stub = AsyncConnectorServiceStub(channel)
            for name, call in every_call("signed", old_meta):
                assert (await code_of(call(stub)))[0] == Code.OK, name
            new_meta = await create(stub, "signed")
    assert new_meta.split(b".")[1] == MetaSigner(read_key(new)).key_id.encode()
    assert new_meta.split(b".")[1] != old_meta.split(b".")[1]
    async with serve_in_background(registry_of(Recording()), meta_key_file=new) as after:
        async with grpc.aio.insecure_channel(after.address) as channel:
            stub = AsyncConnectorServiceStub(channel)
            code, detail = await code_of(every_call("signed", old_meta)[0][1](stub))
            assert code == Code.INVALID_ARGUMENT and "does not have" in detail
            assert (await code_of(every_call("signed", new_meta)[0][1](stub)))[0] == Code.OK


def test_key_files_that_cannot_be_used_are_one_line_startup_errors(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_text("too short\n")
    with pytest.raises(StartupError, match="cannot read the meta key file"):
        load_signer(str(tmp_path / "missing.key"), None, True)
    with pytest.raises(StartupError, match=r"holds 9 bytes; use at least 32"):
        load_signer(str(short), None, False)
    with pytest.raises(StartupError, match="previous meta key file"):
        load_signer(key_file(tmp_path, "k"), str(short), True)
    with pytest.raises(StartupError, match="needs --meta-key-file"):
        load_signer(None, key_file(tmp_path, "p"), True)
    assert load_signer(None, None, needed=False, state_dir=str(tmp_path / "s")) is None
    assert not (tmp_path / "s").exists(), "no key is generated when nothing signs"


@pytest.mark.parametrize("args, message", [
    (["--meta-key-file", "/nonexistent/meta.key"], "cannot read the meta key file"),
    (["--meta-key-file", "SHORT"], "use at least 32"),
])
def test_serve_refuses_to_start_with_an_unusable_key(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "short.key").write_text("x" * 31)
    args = [str(tmp_path / "short.key") if a == "SHORT" else a for a in args]
    done = subprocess.run(
        [FLYTE_CONNECTOR, "serve", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
         "--plugins", "none", *args],
        capture_output=True, text=True, env=cli_env(), timeout=60,
    )
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert "Traceback" not in done.stderr


def test_the_generated_key_is_made_once_private_and_reused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    with caplog.at_level(logging.WARNING, logger="connector_cli.signing"):
        first = load_signer(None, None, needed=True, state_dir=str(state))
    assert first is not None
    path = state / KEY_FILE_NAME
    assert path.stat().st_mode & 0o777 == 0o600
    assert any("other replicas do not share it" in r.getMessage() for r in caplog.records)
    again = load_signer(None, None, needed=True, state_dir=str(state))
    assert again is not None and again.key_id == first.key_id
    path.chmod(0o644)
    with pytest.raises(StartupError, match="mode 0600"):
        load_signer(None, None, needed=True, state_dir=str(state))


def test_sign_resource_meta_is_checked_at_register() -> None:
    class Sloppy(Plain):
        task_type_name = "sloppy"
        sign_resource_meta = "yes"  # type: ignore[assignment]

    with pytest.raises(RegistrationError, match="sign_resource_meta must be True or False"):
        ConnectorRegistry().register(Sloppy())


def test_both_bundled_connectors_ask_for_signing() -> None:
    from flyte_connector_shell.connector import ShellConnector
    from flyte_connector_sql.connector import SQLConnector

    assert ShellConnector.sign_resource_meta is True
    assert SQLConnector.sign_resource_meta is True


# ------------------------------------------------------------------ flyte-connector test

async def test_the_in_process_runner_signs_with_a_key_of_its_own() -> None:
    from connector_cli.run.targets import InProcessTarget
    from connector_cli.run.types import RunRequest

    connector = Recording()
    first = InProcessTarget(registry_of(connector))
    second = InProcessTarget(registry_of(Recording()))
    from flyteidl2.connector.connector_pb2 import TaskExecutionMetadata

    from connector_cli.sdk.secrets import Connection

    request = RunRequest(TaskTemplate(type="signed"), None, "", TaskExecutionMetadata(),
                         Connection(secrets={}, configs={}))
    meta = await first.create(request)
    assert (await first.get(request, meta)).phase == TaskExecution.SUCCEEDED
    from connector_cli.errors import ResourceMetaError

    with pytest.raises(ResourceMetaError):
        await second.get(request, meta)
    assert [c[0] for c in connector.calls] == ["create", "get"]



def test_serve_without_a_key_generates_one_in_the_state_dir_and_warns(tmp_path: Path) -> None:
    """What `make serve` does: no setup, a private key made once, a warning that replicas
    would not share it."""
    state = tmp_path / "state"
    log = tmp_path / "serve.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [FLYTE_CONNECTOR, "serve", "--host", "127.0.0.1", "--port", "0",
             "--metrics-port", "0", "--plugins", "shell", "--state-dir", str(state)],
            stdout=subprocess.DEVNULL, stderr=stderr, env=cli_env(),
        )
    try:
        deadline = time.monotonic() + 30
        while "listening on" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.05)
        text = log.read_text()
        assert re.search(r"listening on 127\.0\.0\.1:\d+", text), text
        key = state / KEY_FILE_NAME
        assert key.stat().st_mode & 0o777 == 0o600
        assert "other replicas do not share it" in text and str(key) in text
        assert key.read_text().strip() not in text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
