"""Fuzz a real daemon: random and mutated bodies to every method, random metas to every
bundled connector.

Asserted for every call: never UNKNOWN, never INTERNAL (all of it is caller-made garbage);
afterwards the daemon still answers health and ListConnectors, no file appeared outside
the test's own directories, and the process the test started as bait is still alive.
`FUZZ_EXAMPLES` sets the examples per test (`make fuzz` runs many more).

The metas never name PID 1, a pid the test does not own, the real boot id or a
PostgreSQL server: forging those is refused by meta signing, which this test must not
rely on to keep the machine it runs on intact.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.core.security_pb2 import Connection
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector_cli.testing import make_template, serve_in_background

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
SERVICES = {
    "flyteidl2.connector.AsyncConnectorService": (
        "CreateTask", "GetTask", "DeleteTask", "GetTaskMetrics", "GetTaskLogs"),
    "flyteidl2.connector.ConnectorMetadataService": ("ListConnectors", "GetConnector"),
    "grpc.health.v1.Health": ("Check",),
}
METHODS = [f"/{service}/{name}" for service, names in SERVICES.items() for name in names]
STREAMING = {"/flyteidl2.connector.AsyncConnectorService/GetTaskLogs"}
NEVER = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
SHELL_FIELDS = ("pid", "start_ticks", "boot_id", "job_dir", "outputs", "exit_code_output",
                "grace")
SQL_FIELDS = ("job_id", "job_dir", "job_uri", "engine", "format", "pid", "start_ticks", "dsn",
              "backend_pid")


class Daemon:
    """A daemon with the bundled plugins on its own loop thread, and the test's bait."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.address = ""
        self.bait = subprocess.Popen(["sleep", "600"], start_new_session=True)
        dead = subprocess.Popen(["true"])
        dead.wait()
        self.safe_pids = [dead.pid, self.bait.pid, 0, -3, 4_194_305, 2**40]
        self.bait_ticks = int(Path(f"/proc/{self.bait.pid}/stat").read_text()
                              .rsplit(")", 1)[1].split()[19])
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),))

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with serve_in_background(plugins=["shell", "sql"], grace_period=2) as daemon:
            self.address = daemon.address
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> Daemon:
        self._thread.start()
        assert self._ready.wait(30), "the daemon did not start"
        self.channel = grpc.insecure_channel(self.address)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.channel.close()
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self._loop.close()
        self.bait.kill()
        self.bait.wait()

    def call(self, method: str, body: bytes) -> grpc.StatusCode:
        """Send raw bytes; the status code the daemon answered with."""
        try:
            if method in STREAMING:
                for _ in self.channel.unary_stream(method)(body, timeout=20):
                    pass
            else:
                self.channel.unary_unary(method)(body, timeout=20)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK


JOB_NAMES = ("cancelled", "deleted", "shell-", "sql-", "status", "flyte-connector-s")


def snapshot(*dirs: Path) -> set[str]:
    """The entries of `dirs` (top level); in /tmp, which other test runs share, only what
    the bundled connectors would create there."""
    found: set[str] = set()
    for base in dirs:
        shared = base in (Path("/tmp"), Path("/"))
        found.update(str(p) for p in base.iterdir()
                     if not shared or p.name.startswith(JOB_NAMES))
    return found


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("fuzz")
    work = root / "cwd" / "sub"
    work.mkdir(parents=True)
    saved = {k: os.environ.get(k) for k in ("FLYTE_CONNECTOR_SHELL_STATE_DIR",
                                             "FLYTE_CONNECTOR_SQL_STATE_DIR")}
    os.environ.update({k: str(root / k.lower()) for k in saved})
    cwd = os.getcwd()
    os.chdir(work)  # a relative job_dir from a meta lands in the test's own directory
    outside = [Path(cwd), Path("/tmp"), Path("/"), root.parent]
    before = snapshot(*outside)
    try:
        with Daemon(root) as running:
            yield running
            assert running.bait.poll() is None, "the bait process was signalled"
            health = running.channel.unary_unary("/grpc.health.v1.Health/Check")
            reply = health_pb2.HealthCheckResponse.FromString(
                health(health_pb2.HealthCheckRequest().SerializeToString(), timeout=10))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        os.chdir(cwd)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    created = snapshot(*outside) - before
    assert not {p for p in created if not p.startswith(str(root))}, created


def valid_bodies() -> list[tuple[str, bytes]]:
    shell = make_template("shell", custom={"script": "exit 0"})
    meta = json.dumps({"pid": 4_194_305, "start_ticks": 1, "boot_id": "fuzz", "job_dir": "/nx"})
    category = pb.TaskCategory(name="shell")
    conn = Connection(secrets={"api_key": "fuzz-secret-value"}, configs={"region": "x"})
    service = "/flyteidl2.connector.AsyncConnectorService/"
    return [
        (service + "CreateTask", pb.CreateTaskRequest(
            template=shell, output_prefix="out", connection=conn).SerializeToString()),
        (service + "GetTask", pb.GetTaskRequest(
            task_category=category, resource_meta=meta.encode()).SerializeToString()),
        (service + "DeleteTask", pb.DeleteTaskRequest(
            task_category=category, resource_meta=meta.encode(),
            connection=conn).SerializeToString()),
        (service + "GetTaskLogs", pb.GetTaskLogsRequest(
            task_category=category, resource_meta=meta.encode(), lines=3).SerializeToString()),
        (service + "GetTaskMetrics", pb.GetTaskMetricsRequest(
            task_category=category, resource_meta=meta.encode()).SerializeToString()),
        # issue 28: a name over the length limit, a NUL in output_prefix
        (service + "CreateTask", pb.CreateTaskRequest(
            template=make_template("s" * 5000), output_prefix="out").SerializeToString()),
        (service + "CreateTask", pb.CreateTaskRequest(
            template=shell, output_prefix="out\x00/x").SerializeToString()),
    ]


VALID = valid_bodies()


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid request with bytes flipped, cut, inserted or its fields cross-wired."""
    method, body = draw(st.sampled_from(VALID))
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "method"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            method = draw(st.sampled_from(METHODS))
    return method, bytes(data)


@FUZZ
@given(method=st.sampled_from(METHODS), body=st.binary(max_size=300))
def test_random_bodies(daemon: Daemon, method: str, body: bytes) -> None:
    assert daemon.call(method, body) not in NEVER


@FUZZ
@given(call=mutated())
def test_mutated_bodies(daemon: Daemon, call: tuple[str, bytes]) -> None:
    assert daemon.call(*call) not in NEVER


def meta_values(daemon: Daemon, field: str) -> st.SearchStrategy[Any]:
    """Values for one meta field: mostly the right type, often hostile, never dangerous."""
    junk = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True),
                     st.integers(-2**70, 2**70), st.text(max_size=20), st.lists(st.integers(),
                                                                                max_size=3))
    component = st.text(st.characters(blacklist_characters="/"), max_size=40)
    text = st.one_of(component, st.just("x" * 5000), st.just("/tmp/\x00x"),
                     st.just("relative/dir"), st.just("/tmp/../etc"), st.just(".."))
    if field == "pid" or field == "backend_pid":
        return st.one_of(st.sampled_from(daemon.safe_pids), junk)
    if field == "start_ticks":
        return st.integers(0, 2**40).filter(lambda t: t != daemon.bait_ticks)
    if field == "boot_id":
        return st.text(min_size=1, max_size=40)
    if field == "job_dir":
        return st.one_of(text, st.sampled_from([str(daemon.root / "jobs"), "/nonexistent/job"]))
    if field == "engine":
        return st.one_of(st.just("sqlite"), junk)
    if field == "dsn":
        return st.just("")
    if field == "outputs":
        return st.one_of(st.dictionaries(st.text(max_size=10), text, max_size=3), junk)
    return st.one_of(text, junk)


@st.composite
def random_meta(draw: st.DrawFn, daemon: Daemon) -> tuple[str, bytes]:
    connector, fields = draw(st.sampled_from([("shell", SHELL_FIELDS), ("sql", SQL_FIELDS)]))
    chosen = draw(st.lists(st.sampled_from(fields), unique=True))
    if connector == "shell" or draw(st.booleans()):
        chosen = list(dict.fromkeys([*fields[:4], *chosen]))  # pid and boot_id always set
    meta = {name: draw(meta_values(daemon, name)) for name in chosen}
    if "pid" not in meta and "backend_pid" in meta:
        meta.pop("backend_pid")
    if meta.get("engine") == "postgresql":
        meta["engine"] = "sqlite"
    nesting = draw(st.integers(0, 3))
    raw = json.dumps(meta).encode()
    if nesting == 3:
        raw = b"[" * 50_000 + b"]" * 50_000
    return connector, raw


@FUZZ
@given(data=st.data(), method=st.sampled_from(
    ["GetTask", "DeleteTask", "GetTaskLogs", "GetTaskMetrics"]))
def test_random_metas_to_every_bundled_connector(
    daemon: Daemon, data: st.DataObject, method: str
) -> None:
    connector, meta = data.draw(random_meta(daemon))
    cls = getattr(pb, f"{method}Request")
    body = cls(task_category=pb.TaskCategory(name=connector), resource_meta=meta)
    code = daemon.call(f"/flyteidl2.connector.AsyncConnectorService/{method}",
                       body.SerializeToString())
    assert code not in NEVER, (connector, method, meta[:300])
