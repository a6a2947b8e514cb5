"""The `bench` connector: does what ../shared/bench/floor_server.py answers with constants.

`create` returns a ResourceMeta `{"job_id": "job-0", "region": "local"}`; `get` returns
SUCCEEDED, message `ok` and the outputs `o0 = 42` and `o1 = "done"` as plain Python values,
so the daemon's own output conversion is part of what is measured. `bench-raw` is the same
connector with `raw_inputs`: CreateTask without the conversion of its inputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from flyteidl2.core.execution_pb2 import TaskExecution

from connector_cli import AsyncConnector, ConnectorRegistry, Resource, ResourceMeta


@dataclass
class BenchMeta(ResourceMeta):
    job_id: str = "job-0"
    region: str = "local"


class BenchConnector(AsyncConnector):
    """Answers like the floor server; `delete` does nothing."""

    name = "Bench Connector"
    task_type_name = "bench"
    metadata_type = BenchMeta

    async def create(self, task_template: Any, output_prefix: str, inputs: Any = None,
                     **kwargs: Any) -> BenchMeta:
        return BenchMeta()

    async def get(self, resource_meta: BenchMeta, **kwargs: Any) -> Resource:
        return Resource(phase=TaskExecution.SUCCEEDED, message="ok",
                        outputs={"o0": 42, "o1": "done"})

    async def delete(self, resource_meta: BenchMeta, **kwargs: Any) -> None:
        return None


class RawInputsBenchConnector(BenchConnector):
    """The `bench` connector with `raw_inputs`: `create` gets the wire inputs, unconverted.
    Against `bench`, it shows what converting a CreateTask's inputs costs the daemon."""

    name = "Bench Connector (raw inputs)"
    task_type_name = "bench-raw"
    raw_inputs = True


class PidConnector(AsyncConnector):
    """Reports the process that answered (`get` message = its pid): shows the spread of
    requests over `serve --processes` workers."""

    name = "Pid Connector"
    task_type_name = "pid"
    metadata_type = BenchMeta

    async def create(self, task_template: Any, output_prefix: str, inputs: Any = None,
                     **kwargs: Any) -> BenchMeta:
        return BenchMeta(job_id=str(os.getpid()))

    async def get(self, resource_meta: BenchMeta, **kwargs: Any) -> Resource:
        return Resource(phase=TaskExecution.SUCCEEDED, message=str(os.getpid()))

    async def delete(self, resource_meta: BenchMeta, **kwargs: Any) -> None:
        return None


ConnectorRegistry.register(BenchConnector())
ConnectorRegistry.register(RawInputsBenchConnector())
ConnectorRegistry.register(PidConnector())
