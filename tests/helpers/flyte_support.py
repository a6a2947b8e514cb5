"""Helpers for the Flyte SDK compatibility tests: daemons in subprocesses (ours and the
Flyte SDK's `c0`), gRPC stubs, the fake Databricks and its certificate."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import grpc
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector.service_pb2_grpc import (
    AsyncConnectorServiceStub,
    ConnectorMetadataServiceStub,
)

from tests.conftest import REPO, cli_env
from tests.helpers.pki import make_pki

FIXTURES = REPO / "tests" / "fixtures" / "connectors"
C0_LOOPBACK = REPO / "tests" / "helpers" / "c0_loopback.py"


def free_port() -> int:
    """A port free on 127.0.0.1 right now (for `c0`, which cannot bind port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A daemon subprocess whose log goes to a file; `ready` waits for ListConnectors."""

    def __init__(self, argv: list[str], log: Path, **env: str) -> None:
        env.setdefault("PYTHONPATH", os.pathsep.join([str(FIXTURES), str(REPO)]))
        self.log = log
        self._file = log.open("w")
        self.proc = subprocess.Popen(argv, stdout=self._file, stderr=subprocess.STDOUT,
                                     env=cli_env(**env), cwd=REPO)
        self.address = ""

    def text(self) -> str:
        """Everything the daemon logged so far."""
        return self.log.read_text(errors="replace")

    def ready(self, address: str, timeout: float = 90.0) -> Process:
        """Wait until the daemon answers ListConnectors at `address`."""
        self.address = address
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.text()}")
            try:
                with grpc.insecure_channel(address) as channel:
                    ConnectorMetadataServiceStub(channel).ListConnectors(
                        pb.ListConnectorsRequest(), timeout=2)
                return self
            except grpc.RpcError:
                time.sleep(0.3)
        self.stop()
        raise AssertionError(f"daemon not ready at {address}:\n{self.text()}")

    def stop(self) -> str:
        """Stop the daemon (SIGTERM, then kill) and return its log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._file.close()
        return self.text()


def start_ours(tmp: Path, *args: str, **env: str) -> Process:
    """`flyte-connector serve` on a free port with `args` (e.g. plugins and modules)."""
    port = free_port()
    argv = [sys.executable, "-m", "connector_cli", "serve", "--host", "127.0.0.1",
            "--port", str(port), "--metrics-port", "0", "--log-level", "debug", *args]
    return Process(argv, tmp / f"ours-{port}.log", **env).ready(f"127.0.0.1:{port}")


def start_c0(tmp: Path, *args: str, metrics_port: int = 0, **env: str) -> Process:
    """The Flyte SDK's own connector server, `c0`, on free loopback ports (and only there);
    /metrics on `metrics_port` when given."""
    port = free_port()
    argv = [sys.executable, str(C0_LOOPBACK), "--port", str(port),
            "--prometheus_port", str(metrics_port or free_port()), *args]
    c0 = Process(argv, tmp / f"c0-{port}.log", **env).ready(f"127.0.0.1:{port}")
    listening = listening_addresses(c0.proc.pid)
    assert listening and all(host in ("127.0.0.1", "::1") for host, _ in listening), listening
    return c0


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """(host, port) of every TCP socket process `pid` listens on, from /proc."""
    import ipaddress

    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, size in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            raw, port = fields[1].split(":")
            packed = bytes.fromhex(raw)
            # /proc prints each 32-bit word in host (little-endian) order
            packed = b"".join(packed[i:i + 4][::-1] for i in range(0, size, 4))
            host = ipaddress.ip_address(packed)
            if isinstance(host, ipaddress.IPv6Address) and host.ipv4_mapped:
                host = host.ipv4_mapped
            found.append((str(host), int(port, 16)))
    return found


class Stubs:
    """Both services' stubs on one channel to a daemon."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.tasks = AsyncConnectorServiceStub(self.channel)
        self.meta = ConnectorMetadataServiceStub(self.channel)

    async def __aenter__(self) -> Stubs:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.channel.close()

    async def list(self) -> dict[str, list[tuple[str, int]]]:
        response = await self.meta.ListConnectors(pb.ListConnectorsRequest(), timeout=10)
        return {c.name: [(t.name, t.version) for t in c.supported_task_categories]
                for c in response.connectors}

    async def create(self, template: Any, inputs: Any = None, secrets: Optional[dict] = None,
                     configs: Optional[dict] = None) -> bytes:
        from flyteidl2.core.security_pb2 import Connection

        request = pb.CreateTaskRequest(template=template, output_prefix="/tmp/flyte-out",
                                       connection=Connection(secrets=secrets or {},
                                                             configs=configs or {}))
        if inputs is not None:
            request.inputs.CopyFrom(inputs)
        response = await self.tasks.CreateTask(request, timeout=30)
        return bytes(response.resource_meta)

    async def get(self, task_type: str, meta: bytes, secrets: Optional[dict] = None) -> Any:
        from flyteidl2.core.security_pb2 import Connection

        response = await self.tasks.GetTask(pb.GetTaskRequest(
            task_category=pb.TaskCategory(name=task_type), resource_meta=meta,
            connection=Connection(secrets=secrets or {})), timeout=30)
        return response.resource

    async def delete(self, task_type: str, meta: bytes, secrets: Optional[dict] = None) -> None:
        from flyteidl2.core.security_pb2 import Connection

        await self.tasks.DeleteTask(pb.DeleteTaskRequest(
            task_category=pb.TaskCategory(name=task_type), resource_meta=meta,
            connection=Connection(secrets=secrets or {})), timeout=30)

    async def metrics(self, task_type: str, meta: bytes) -> Any:
        return await self.tasks.GetTaskMetrics(pb.GetTaskMetricsRequest(
            task_category=pb.TaskCategory(name=task_type), resource_meta=meta,
            queries=["count"]), timeout=30)

    async def logs(self, task_type: str, meta: bytes) -> list[Any]:
        call = self.tasks.GetTaskLogs(pb.GetTaskLogsRequest(
            task_category=pb.TaskCategory(name=task_type), resource_meta=meta), timeout=30)
        return [page async for page in call]


def write_pki(tmp: Path) -> dict[str, Path]:
    """A CA and a certificate for 127.0.0.1 (the fake Databricks serves https)."""
    return make_pki(tmp)
