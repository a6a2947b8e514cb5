"""Flyte 1 (`flyteidl`) agent messages to and from Flyte 2 (`flyteidl2`) connector ones.

Flyte 2's connector API was cut from Flyte 1's agent API with the same field numbers, so
most of a message converts by its wire bytes: what one generation writes, the other parses
field for field (tests/test_v1_api.py walks both descriptors and proves it, listing
every field only one side has). What is not shared is converted here by name:

- v1 requests carry the deprecated `task_type` when `task_category` is unset (older
  propellers): it becomes the category (version 0), as flytekit's server reads it;
- v1 `TaskExecutionMetadata.overrides` and v2-only fields (`Outputs.produced_artifacts`,
  `TaskLog.link_type`, `LogLine.short_pod_name`, ...) have no counterpart and are dropped
  (the daemon's CreateTask parses a v1 request as v2 directly and keeps `overrides` as
  an unknown field, see `daemon.servicers_v1`);
- a v1 `Resource` also gets the deprecated `state` (older propellers read it when `phase`
  is unset) and, when the connector raised, an `agent_error`;
- v1 `Agent` (ListAgents) has `is_sync` and the deprecated `supported_task_types`.

Imported only where the `flyteidl` (v1) package is installed (`flyte-connector[flyte1]`).
"""

from __future__ import annotations

from typing import Any, Iterable

from flyteidl.admin import agent_pb2 as v1
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.core.execution_pb2 import TaskExecution

# Phase -> the deprecated v1 State a propeller older than `phase` reads instead.
_STATES = {
    TaskExecution.QUEUED: v1.PENDING,
    TaskExecution.WAITING_FOR_RESOURCES: v1.PENDING,
    TaskExecution.INITIALIZING: v1.PENDING,
    TaskExecution.RUNNING: v1.RUNNING,
    TaskExecution.SUCCEEDED: v1.SUCCEEDED,
    TaskExecution.FAILED: v1.PERMANENT_FAILURE,
    TaskExecution.ABORTED: v1.PERMANENT_FAILURE,
    TaskExecution.RETRYABLE_FAILED: v1.RETRYABLE_FAILURE,
}


def recast(message: Any, target: Any) -> Any:
    """`message` as the other generation's `target` class, through its wire bytes; fields
    the target does not have are dropped rather than carried as unknown fields."""
    out = target.FromString(message.SerializeToString())
    out.DiscardUnknownFields()
    return out


def category(request: Any) -> pb.TaskCategory:
    """A v1 request's task category; the deprecated `task_type` (version 0) when unset."""
    if request.task_category.name:
        return pb.TaskCategory(name=request.task_category.name,
                               version=request.task_category.version)
    return pb.TaskCategory(name=request.task_type, version=0)


def create_request(request: v1.CreateTaskRequest) -> pb.CreateTaskRequest:
    """A v1 CreateTask as a v2 one (no `connection`: v1 has none)."""
    return recast(request, pb.CreateTaskRequest)  # type: ignore[no-any-return]


def sync_request(header: v1.CreateRequestHeader, inputs: Any) -> pb.CreateTaskRequest:
    """ExecuteTaskSync's header and inputs (a v1 LiteralMap or None) as a v2 CreateTask."""
    request = v1.CreateTaskRequest(
        template=header.template, output_prefix=header.output_prefix,
        task_execution_metadata=header.task_execution_metadata,
    )
    if inputs is not None:
        request.inputs.CopyFrom(inputs)
    return create_request(request)


def get_request(request: v1.GetTaskRequest) -> pb.GetTaskRequest:
    """A v1 GetTask as a v2 one."""
    return pb.GetTaskRequest(resource_meta=request.resource_meta, task_category=category(request),
                             output_prefix=request.output_prefix)


def delete_request(request: v1.DeleteTaskRequest) -> pb.DeleteTaskRequest:
    """A v1 DeleteTask as a v2 one."""
    return pb.DeleteTaskRequest(resource_meta=request.resource_meta,
                                task_category=category(request))


def metrics_request(request: v1.GetTaskMetricsRequest) -> pb.GetTaskMetricsRequest:
    """A v1 GetTaskMetrics as a v2 one."""
    out: pb.GetTaskMetricsRequest = recast(request, pb.GetTaskMetricsRequest)
    out.task_category.CopyFrom(category(request))
    return out


def logs_request(request: v1.GetTaskLogsRequest) -> pb.GetTaskLogsRequest:
    """A v1 GetTaskLogs as a v2 one."""
    out: pb.GetTaskLogsRequest = recast(request, pb.GetTaskLogsRequest)
    out.task_category.CopyFrom(category(request))
    return out


def get_response(data: bytes) -> v1.GetTaskResponse:
    """A v2 GetTaskResponse (its wire bytes, as the dispatcher answers) as a v1 one, with
    the deprecated `state` filled from the phase."""
    out = v1.GetTaskResponse.FromString(data)
    out.DiscardUnknownFields()
    fill_state(out.resource)
    return out


def resource(message: pb.Resource) -> v1.Resource:
    """A v2 Resource as a v1 one (`state` filled)."""
    out: v1.Resource = recast(message, v1.Resource)
    fill_state(out)
    return out


def fill_state(out: v1.Resource) -> None:
    """Set the deprecated `state` a propeller reads when it predates `phase`."""
    state = _STATES.get(out.phase)
    if state is not None:
        out.state = state


def failed_resource(message: str, code: str, user: bool = True) -> v1.Resource:
    """A FAILED v1 resource for a connector that raised: `agent_error` carries the code the
    propeller records as the task's error code (non-recoverable, from the user's code)."""
    from flyteidl.core.execution_pb2 import ExecutionError

    return v1.Resource(
        phase=TaskExecution.FAILED, state=v1.PERMANENT_FAILURE, message=message,
        agent_error=v1.AgentError(
            code=code, kind=v1.AgentError.NON_RECOVERABLE,
            origin=ExecutionError.USER if user else ExecutionError.SYSTEM,
        ),
    )


def agents(connectors: Iterable[tuple[str, list[tuple[str, int]], bool]]) -> list[v1.Agent]:
    """ListAgents' `Agent`s from (name, categories, is_sync) rows."""
    return [
        v1.Agent(
            name=name, is_sync=is_sync,
            supported_task_types=[t for t, _ in categories],
            supported_task_categories=[v1.TaskCategory(name=t, version=v) for t, v in categories],
        )
        for name, categories, is_sync in connectors
    ]


def metrics_response(message: pb.GetTaskMetricsResponse) -> v1.GetTaskMetricsResponse:
    """A v2 GetTaskMetricsResponse as a v1 one (wire-identical)."""
    return recast(message, v1.GetTaskMetricsResponse)  # type: ignore[no-any-return]


def logs_response(message: pb.GetTaskLogsResponse) -> v1.GetTaskLogsResponse:
    """A v2 GetTaskLogsResponse page as a v1 one (`lines` are v1's `structured_lines`)."""
    return recast(message, v1.GetTaskLogsResponse)  # type: ignore[no-any-return]
