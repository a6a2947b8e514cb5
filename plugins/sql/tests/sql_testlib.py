"""Helpers shared by the SQL plugin tests: templates, a job runner that cleans up after itself."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from flyteidl2.core.execution_pb2 import TaskExecution
from flyteidl2.core.tasks_pb2 import TaskTemplate
from google.protobuf.struct_pb2 import Struct

from connector_cli.sdk.connector import Resource, call_method, is_terminal_phase
from flyte_connector_sql import process
from flyte_connector_sql.connector import SQLConnector, SQLMeta

PLUGIN = Path(__file__).resolve().parents[1]
REPO = PLUGIN.parents[1]
# ~60 million recursive steps: 30-40 s on this class of machine (measured 39.5 s).
SLOW_SQLITE = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60000000) "
    "SELECT count(*) FROM n"
)


def template(**custom: Any) -> TaskTemplate:
    """A "sql" task template whose `custom` holds the given keys."""
    struct = Struct()
    struct.update(custom)
    return TaskTemplate(type="sql", custom=struct)


class Jobs:
    """Creates jobs through `call_method` and stops every worker it started at teardown."""

    def __init__(self, output_prefix: Path) -> None:
        self.connector = SQLConnector()
        self.prefix = output_prefix
        self.started: list[SQLMeta] = []

    async def create(self, tmpl: TaskTemplate, inputs: Optional[dict[str, Any]] = None,
                     **kwargs: Any) -> SQLMeta:
        meta = await call_method(self.connector, "create", tmpl, str(self.prefix), inputs,
                                 **kwargs)
        self.started.append(meta)
        return meta

    async def get(self, meta: SQLMeta, **kwargs: Any) -> Resource:
        return await call_method(self.connector, "get", meta, **kwargs)

    async def delete(self, meta: SQLMeta, **kwargs: Any) -> float:
        """Delete the job; returns how many seconds it took."""
        started = time.monotonic()
        await call_method(self.connector, "delete", meta, **kwargs)
        return time.monotonic() - started

    async def wait(self, meta: SQLMeta, timeout: float = 20, **kwargs: Any) -> Resource:
        """Poll `get` until a terminal phase (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            resource = await self.get(meta, **kwargs)
            if is_terminal_phase(resource.phase):
                return resource
            assert time.monotonic() < deadline, f"job still {resource.phase}: {resource.message}"
            time.sleep(0.05)

    async def wait_running(self, meta: SQLMeta, **kwargs: Any) -> Resource:
        """Poll until the worker reports RUNNING (the query has been sent)."""
        deadline = time.monotonic() + 10
        while True:
            resource = await self.get(meta, **kwargs)
            if resource.phase == TaskExecution.RUNNING:
                return resource
            assert not is_terminal_phase(resource.phase), resource.message
            assert time.monotonic() < deadline, resource.message
            time.sleep(0.02)

    def cleanup(self) -> None:
        for meta in self.started:
            process.stop(meta.pid, meta.start_ticks, 0.5, job_dir=meta.job_dir)


def read_result(resource: Resource) -> str:
    """The text of the result file a SUCCEEDED resource points at."""
    return Path(resource.outputs["result"].uri).read_text()


def all_job_text(root: Path) -> str:
    """Every byte under `root`, decoded, to search for leaked secrets."""
    return "\n".join(p.read_bytes().decode("utf-8", "replace")
                     for p in sorted(root.rglob("*")) if p.is_file())
