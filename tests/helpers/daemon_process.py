"""`flyte-connector` in subprocesses (the CLI, a serving daemon) and slow requests to drain."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

from flyteidl2.connector import connector_pb2 as pb

from tests.conftest import REPO, cli_env
from tests.fixtures.connectors import daemon_connectors as dc

FIXTURES = REPO / "tests" / "fixtures" / "connectors"


def slow_get(seconds: float) -> pb.GetTaskRequest:
    return pb.GetTaskRequest(task_category=pb.TaskCategory(name="slow"), resource_meta=dc.Empty(seconds=seconds).encode())


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connector_cli", *args], capture_output=True,
                          text=True, timeout=60, env=cli_env(**env), cwd=REPO)


class Daemon:
    """`flyte-connector serve` in a subprocess, serving tests/fixtures/connectors."""

    def __init__(self, *args: str, **env: str) -> None:
        env.setdefault("PYTHONPATH", os.pathsep.join([str(FIXTURES), str(REPO)]))
        env = cli_env(**env)
        env.setdefault("FLYTE_CONNECTOR_METRICS_PORT", "0")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "connector_cli", "serve", "--host", "127.0.0.1", "--port", "0",
             "--plugins", "none", "-m", "daemon_connectors", *args],
            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
        )
        self.lines: list[str] = []

    def wait_ready(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            if "listening on 127.0.0.1:" in line:
                return line.split("listening on ")[1].split()[0]
        self.proc.kill()
        raise AssertionError("daemon did not start:\n" + "".join(self.lines))

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        try:
            _, rest = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        return self.proc.returncode, "".join(self.lines) + rest


async def wait_in_flight() -> None:
    """Let requests reach the daemon before signalling it."""
    await asyncio.sleep(0.3)
