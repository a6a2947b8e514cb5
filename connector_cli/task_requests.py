"""The AsyncConnectorService request messages, built in one place.

The client of a running daemon (`connector_cli.client`) and the in-process runner target
(`connector_cli.run.targets`) send the very same messages, so `flyte-connector test`
exercises a connector the way the backend does whichever way it runs. `OPERATIONS` names
each request's operation (the dispatcher's method) and gRPC method, explicitly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from flyteidl2.connector.connector_pb2 import (
    CreateTaskRequest,
    DeleteTaskRequest,
    GetTaskLogsRequest,
    GetTaskMetricsRequest,
    GetTaskRequest,
)

from connector_cli.sdk.registry import Category, category_message

if TYPE_CHECKING:
    from flyteidl2.core.tasks_pb2 import TaskTemplate
    from flyteidl2.task.common_pb2 import Inputs

# operation (a `Dispatcher` method) -> the AsyncConnectorService method
OPERATIONS = {
    "create": "CreateTask",
    "get": "GetTask",
    "delete": "DeleteTask",
    "get_metrics": "GetTaskMetrics",
    "get_logs": "GetTaskLogs",
}


def create_request(template: TaskTemplate, output_prefix: str, inputs: Optional[Inputs] = None,
                   task_execution_metadata: Any = None,
                   connection: Any = None) -> CreateTaskRequest:
    """CreateTask for `template`."""
    return CreateTaskRequest(template=template, output_prefix=output_prefix, inputs=inputs,
                             task_execution_metadata=task_execution_metadata,
                             connection=connection)


def get_request(category: Category, resource_meta: bytes, output_prefix: str = "",
                connection: Any = None) -> GetTaskRequest:
    """GetTask for the job `resource_meta` names."""
    return GetTaskRequest(task_category=category_message(category), resource_meta=resource_meta,
                          output_prefix=output_prefix, connection=connection)


def delete_request(category: Category, resource_meta: bytes,
                   connection: Any = None) -> DeleteTaskRequest:
    """DeleteTask for the job `resource_meta` names."""
    return DeleteTaskRequest(task_category=category_message(category),
                             resource_meta=resource_meta, connection=connection)


def metrics_request(category: Category, resource_meta: bytes,
                    **fields: Any) -> GetTaskMetricsRequest:
    """GetTaskMetrics; `fields` are `queries`, `start_time`, `end_time`, `step`."""
    return GetTaskMetricsRequest(task_category=category_message(category),
                                 resource_meta=resource_meta, **fields)


def logs_request(category: Category, resource_meta: bytes, lines: int = 0,
                 token: str = "") -> GetTaskLogsRequest:
    """GetTaskLogs from page `token` ('' for the first)."""
    return GetTaskLogsRequest(task_category=category_message(category),
                              resource_meta=resource_meta, lines=lines, token=token)
