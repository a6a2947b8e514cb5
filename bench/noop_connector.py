"""Connectors for bench_server.py: a no-op one, and one whose plain-def `get` blocks 100 ms."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from flyteidl2.core.execution_pb2 import TaskExecution

from connector_cli import AsyncConnector, ConnectorRegistry, Resource, ResourceMeta


@dataclass
class NoopMeta(ResourceMeta):
    job_id: str = "job-1"


class NoopConnector(AsyncConnector):
    name = "Noop"
    task_type_name = "noop"
    metadata_type = NoopMeta

    async def create(self, task_template: Any, output_prefix: str, inputs: Any = None,
                     **kwargs: Any) -> NoopMeta:
        return NoopMeta()

    async def get(self, resource_meta: NoopMeta, **kwargs: Any) -> Resource:
        return Resource(phase=TaskExecution.SUCCEEDED, message="done")

    async def delete(self, resource_meta: NoopMeta, **kwargs: Any) -> None:
        return None


class BlockingConnector(AsyncConnector):
    name = "Blocking"
    task_type_name = "blocking"
    metadata_type = NoopMeta

    def create(self, task_template: Any, output_prefix: str, inputs: Any = None,
               **kwargs: Any) -> NoopMeta:
        return NoopMeta()

    def get(self, resource_meta: NoopMeta, **kwargs: Any) -> Resource:
        time.sleep(0.1)
        return Resource(phase=TaskExecution.RUNNING)

    def delete(self, resource_meta: NoopMeta, **kwargs: Any) -> None:
        return None


ConnectorRegistry.register(NoopConnector())
ConnectorRegistry.register(BlockingConnector())
