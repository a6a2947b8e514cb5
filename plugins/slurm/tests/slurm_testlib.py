"""Helpers for the Slurm connector tests: templates, and a job runner that cleans up."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from typing import Any, Optional

from flyte_connector_slurm.connector import SlurmConnector, SlurmMeta
from flyteidl2.core.tasks_pb2 import TaskTemplate

from connector_cli import testing
from connector_cli.literals import FlyteFile
from connector_cli.sdk.connector import Resource, call_method, is_terminal_phase

KINDS: dict[str, Any] = {"int": int, "str": str, "float": float, "bool": bool, "file": FlyteFile}


def make_template(custom: dict[str, Any], outputs: Optional[dict[str, str]] = None,
                  inputs: Optional[dict[str, str]] = None) -> TaskTemplate:
    """A slurm task template; `outputs`/`inputs` map names to 'int', 'str', 'file'..."""
    return testing.make_template(
        "slurm", version=1, custom=custom,
        outputs={k: KINDS[v] for k, v in (outputs or {}).items()},
        inputs={k: KINDS[v] for k, v in (inputs or {}).items()})


def squeue_ids() -> list[int]:
    """Ids of the jobs slurmctld lists as pending or running."""
    done = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                          timeout=30, env=os.environ)
    assert done.returncode == 0, done.stderr
    return [int(line) for line in done.stdout.split()]


def scontrol_knows(job_id: int) -> bool:
    done = subprocess.run(["scontrol", "show", "job", str(job_id)], capture_output=True,
                          text=True, timeout=30)
    return done.returncode == 0


class Jobs:
    """Creates jobs through the connector API and scancels every one at teardown."""

    def __init__(self, connector: Optional[SlurmConnector] = None) -> None:
        self.connector = connector or SlurmConnector()
        self.started: list[SlurmMeta] = []

    async def create(self, custom: dict[str, Any], *, inputs: Optional[dict[str, Any]] = None,
                     outputs: Optional[dict[str, str]] = None, **kwargs: Any) -> SlurmMeta:
        template = make_template(custom, outputs,
                                 dict.fromkeys(inputs or {}, "str") if inputs else None)
        meta = await call_method(self.connector, "create", template, "", inputs, **kwargs)
        self.started.append(meta)
        return SlurmMeta.decode(meta.encode())

    async def get(self, meta: SlurmMeta, **kwargs: Any) -> Resource:
        return await call_method(self.connector, "get", meta, **kwargs)

    async def finish(self, meta: SlurmMeta, *, timeout: float = 60.0, **kwargs: Any) -> Resource:
        """Poll `get` until a terminal phase."""
        deadline = time.monotonic() + timeout
        while True:
            resource = await self.get(meta, **kwargs)
            if is_terminal_phase(resource.phase):
                return resource
            assert time.monotonic() < deadline, f"job still {resource.phase} after {timeout}s"
            await asyncio.sleep(0.2)

    async def run(self, custom: dict[str, Any], *, inputs: Optional[dict[str, Any]] = None,
                  outputs: Optional[dict[str, str]] = None, **kwargs: Any) -> Resource:
        meta = await self.create(custom, inputs=inputs, outputs=outputs, **kwargs)
        return await self.finish(meta, **kwargs)

    async def log_lines(self, meta: SlurmMeta, token: str = "",
                        lines: int = 0) -> tuple[list[str], str]:
        """One get_logs page: its line texts and next token ('' when none)."""
        texts: list[str] = []
        next_token = ""
        async for message in await call_method(self.connector, "get_logs", meta, token=token,
                                               lines=lines):
            if message.HasField("header"):
                assert not texts, "the header must come before the bodies"
                next_token = message.header.token
            else:
                texts.extend(line.message for line in message.body.lines)
        return texts, next_token

    def cleanup(self) -> None:
        ids = [str(meta.job_id) for meta in self.started]
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True, timeout=30)


async def wait_until(condition: Any, timeout: float, step: float = 0.2) -> bool:
    """Poll a sync `condition()` until true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return bool(condition())
        await asyncio.sleep(step)
    return True
