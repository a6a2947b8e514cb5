"""A complete connector: a "greeting job" that takes `seconds` to finish.

It keeps no state of its own: everything `get` and `delete` need travels in the
`HelloMeta` bytes that Flyte stores and sends back, so any replica can answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

from flyteidl2.core.execution_pb2 import TaskExecution, TaskLog

from connector_cli import AsyncConnector, ConnectorRegistry, Resource, ResourceMeta


@dataclass
class HelloMeta(ResourceMeta):
    name: str
    started_at: float
    seconds: float
    cancelled: bool = False


class HelloConnector(AsyncConnector):
    name = "Hello"
    task_type_name = "hello"
    metadata_type = HelloMeta

    async def create(
        self,
        task_template: Any,
        output_prefix: str,
        inputs: Optional[dict[str, Any]] = None,
        **kwargs: Any,
    ) -> HelloMeta:
        inputs = inputs or {}
        return HelloMeta(
            name=str(inputs.get("name", "world")),
            started_at=time.time(),
            seconds=float(inputs.get("seconds", 0)),
        )

    async def get(self, resource_meta: HelloMeta, **kwargs: Any) -> Resource:
        elapsed = time.time() - resource_meta.started_at
        link = TaskLog(name="Greeting console", uri=f"https://example.com/hello/{resource_meta.name}")
        if elapsed < resource_meta.seconds:
            left = resource_meta.seconds - elapsed
            return Resource(
                phase=TaskExecution.RUNNING, message=f"{left:.1f}s to go", log_links=[link]
            )
        greeting = f"Hello, {resource_meta.name}!"
        return Resource(
            phase=TaskExecution.SUCCEEDED, message="greeted", log_links=[link],
            outputs={"greeting": greeting},
        )

    async def delete(self, resource_meta: HelloMeta, **kwargs: Any) -> None:
        # Nothing runs remotely, so there is nothing to cancel; a real connector would
        # cancel the job here and treat "already finished" or "not found" as success.
        return None


ConnectorRegistry.register(HelloConnector())
