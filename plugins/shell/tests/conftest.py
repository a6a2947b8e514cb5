"""Fixtures for the shell connector tests: real processes, cleaned up after every test."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, AsyncIterator, Optional

import pytest
from flyteidl2.core.tasks_pb2 import TaskTemplate

from connector_cli import testing
from connector_cli.literals import FlyteFile
from connector_cli.sdk.connector import Resource, call_method, is_terminal_phase
from flyte_connector_shell import cgroups, procfs
from flyte_connector_shell.connector import ShellConnector, ShellMeta

SHELL_DIR = Path(__file__).resolve().parent.parent
EXAMPLES = SHELL_DIR / "examples"


def make_template(custom: dict[str, Any], outputs: Optional[dict[str, str]] = None) -> TaskTemplate:
    """A shell task template; `outputs` maps output names to 'int' or 'file'."""
    kinds = {"int": int, "file": FlyteFile}
    return testing.make_template("shell", custom=custom,
                                 outputs={k: kinds[v] for k, v in (outputs or {}).items()})


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    stat = procfs.read_stat(pid)
    return stat is not None and stat.alive


def wait_for(condition: Any, timeout: float = 5.0, step: float = 0.02) -> bool:
    """Poll `condition()` until true or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return bool(condition())
        time.sleep(step)
    return True


class Jobs:
    """Starts jobs through the connector API and deletes every one of them at teardown."""

    def __init__(self, connector: ShellConnector, prefix: Path) -> None:
        self.connector = connector
        self.prefix = prefix
        self.started: list[ShellMeta] = []

    async def create(self, custom: dict[str, Any], inputs: Optional[dict[str, Any]] = None,
                     outputs: Optional[dict[str, str]] = None, **kwargs: Any) -> ShellMeta:
        template = make_template(custom, outputs)
        meta = await call_method(self.connector, "create", template, str(self.prefix), inputs, **kwargs)
        self.started.append(meta)
        return ShellMeta.decode(meta.encode())

    async def get(self, meta: ShellMeta) -> Resource:
        return await call_method(self.connector, "get", meta)

    async def finish(self, meta: ShellMeta, timeout: float = 10.0) -> Resource:
        """Poll `get` until a terminal phase."""
        deadline = time.monotonic() + timeout
        while True:
            resource = await self.get(meta)
            if is_terminal_phase(resource.phase):
                return resource
            assert time.monotonic() < deadline, f"job still {resource.phase} after {timeout}s"
            await asyncio.sleep(0.02)

    async def run(self, custom: dict[str, Any], inputs: Optional[dict[str, Any]] = None,
                  outputs: Optional[dict[str, str]] = None, **kwargs: Any) -> Resource:
        return await self.finish(await self.create(custom, inputs, outputs, **kwargs))

    async def log_lines(self, meta: ShellMeta, token: str = "", lines: int = 0) -> tuple[list[str], str]:
        """One get_logs page: its line texts and next token ('' when none)."""
        texts, next_token = [], ""
        async for message in await call_method(self.connector, "get_logs", meta, token=token, lines=lines):
            if message.HasField("header"):
                assert not texts, "the header must come before the bodies"
                next_token = message.header.token
            else:
                texts.extend(line.message for line in message.body.lines)
        return texts, next_token


@pytest.fixture
async def jobs(tmp_path: Path) -> AsyncIterator[Jobs]:
    """A connector and a local output prefix; leftover processes are killed at the end."""
    jobs = Jobs(ShellConnector(), tmp_path / "prefix")
    yield jobs
    for meta in jobs.started:
        procfs.terminate(meta.pid, meta.start_ticks, meta.boot_id, 0.0, nonce=meta.nonce)
        if meta.cgroup:
            cgroups.terminate(Path(meta.cgroup), 0.0)
