"""`flyte-connector` in subprocesses (the CLI, a serving daemon), slow requests to drain, and
scraping a daemon's /metrics."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import urllib.request
from typing import IO, Optional

from flyteidl2.connector import connector_pb2 as pb

from tests.conftest import REPO, cli_env
from tests.fixtures.connectors import daemon_connectors as dc

FIXTURES = REPO / "tests" / "fixtures" / "connectors"


def read_address(stream: IO[str], timeout: float, seen: list[str]) -> Optional[str]:
    """Read a daemon's log lines (kept in `seen`) until its "listening on 127.0.0.1:PORT"
    line: the address, or None when the stream ends or `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            return None
        seen.append(line)
        match = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
        if match:
            return match.group(1)
    return None


def scrape(url: str) -> str:
    """The text of a /metrics endpoint (call it off the event loop that serves it)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def slow_get(seconds: float) -> pb.GetTaskRequest:
    return pb.GetTaskRequest(task_category=pb.TaskCategory(name="slow"), resource_meta=dc.Empty(seconds=seconds).encode())


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connector_cli", *args], capture_output=True,
                          text=True, timeout=60, env=cli_env(**env), cwd=REPO)


def _limit_fds(count: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))


class Daemon:
    """`flyte-connector serve` in a subprocess, serving tests/fixtures/connectors."""

    def __init__(self, *args: str, fds: Optional[int] = None, **env: str) -> None:
        env.setdefault("PYTHONPATH", os.pathsep.join([str(FIXTURES), str(REPO)]))
        env = cli_env(**env)
        env.setdefault("FLYTE_CONNECTOR_METRICS_PORT", "0")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "connector_cli", "serve", "--host", "127.0.0.1", "--port", "0",
             "--plugins", "none", "-m", "daemon_connectors", *args],
            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
            preexec_fn=None if fds is None else lambda: _limit_fds(fds),
        )
        self.lines: list[str] = []

    def wait_ready(self, timeout: float = 30) -> str:
        assert self.proc.stderr is not None
        address = read_address(self.proc.stderr, timeout, self.lines)
        if address is None:
            self.proc.kill()
            raise AssertionError("daemon did not start:\n" + "".join(self.lines))
        return address

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
