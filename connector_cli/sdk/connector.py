"""The connector SDK: `AsyncConnector`, `Resource`, phase helpers and method invocation.

A connector knows one external service. `create` starts a job and returns a small
`ResourceMeta`; `get` polls it and returns a `Resource`; `delete` cancels it. Methods may be
written as `async def` or as plain `def`; the framework runs plain ones on a worker thread
so a blocking client library never stalls other requests.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import dataclasses
import functools
import inspect
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Mapping, Optional

from flyteidl2.core.execution_pb2 import TaskExecution

from connector_cli.errors import UnknownStateError
from connector_cli.sdk.resource_meta import ResourceMeta

if TYPE_CHECKING:
    from flyteidl2.connector.connector_pb2 import (
        GetTaskLogsResponse,
        GetTaskMetricsResponse,
        TaskExecutionMetadata,
    )
    from flyteidl2.core.execution_pb2 import TaskLog
    from flyteidl2.core.tasks_pb2 import TaskTemplate

Phase = int
MethodKind = Literal["async", "sync", "asyncgen"]

TERMINAL_PHASES: frozenset[int] = frozenset(
    {
        TaskExecution.SUCCEEDED,
        TaskExecution.FAILED,
        TaskExecution.RETRYABLE_FAILED,
        TaskExecution.ABORTED,
    }
)
_VALID_PHASES = frozenset(TaskExecution.Phase.values()) - {TaskExecution.UNDEFINED}


def is_terminal_phase(phase: Phase) -> bool:
    """True when Flyte stops polling a task in this phase."""
    return phase in TERMINAL_PHASES


def phase_name(phase: Phase) -> str:
    """The `TaskExecution.Phase` name of a phase number, e.g. 'RUNNING'."""
    try:
        return TaskExecution.Phase.Name(phase)
    except ValueError:
        return f"phase {phase}"


_STATES: dict[str, int] = {}
for _phase, _names in {
    TaskExecution.QUEUED: "queued submitted scheduled created new waiting",
    TaskExecution.WAITING_FOR_RESOURCES: "waiting_for_resources pending_resources throttled",
    TaskExecution.INITIALIZING: "pending initializing starting provisioning",
    TaskExecution.RUNNING: "running in_progress active executing terminating",
    TaskExecution.SUCCEEDED: "succeeded success successful done completed complete finished",
    TaskExecution.FAILED: "failed failure error errored internal_error timeout timedout "
    "timed_out skipped",
    TaskExecution.RETRYABLE_FAILED: "retryable_failed retryable_failure retryable",
    TaskExecution.ABORTED: "aborted cancelled canceled killed terminated stopped",
}.items():
    for _name in _names.split():
        _STATES[_name] = _phase


def convert_to_flyte_phase(state: str) -> Phase:
    """Map an external service's job state (e.g. 'pending', 'DONE', 'cancelled') to a phase.

    Case, spaces and dashes are ignored. Raises `UnknownStateError` listing the known
    states when the state is not recognised, so a new upstream state is never silently
    treated as running or done.
    """
    key = str(state).strip().lower().replace("-", "_").replace(" ", "_")
    try:
        return _STATES[key]
    except KeyError:
        known = ", ".join(sorted(_STATES))
        raise UnknownStateError(
            f"unknown job state {state!r}; known states: {known}. "
            "Map it explicitly to a TaskExecution phase in your connector."
        ) from None


@dataclasses.dataclass
class Resource:
    """What `get` reports about a job.

    `phase` is a `TaskExecution.Phase` (or a state string understood by
    `convert_to_flyte_phase`); `outputs` may be plain Python values keyed by output name
    (converted to literals using the task's interface) or ready `flyteidl2.task.Outputs`.
    """

    phase: Phase
    message: Optional[str] = None
    log_links: Optional[list[TaskLog]] = None
    outputs: Optional[Any] = None
    custom_info: Optional[dict[str, Any]] = None

    def __post_init__(self) -> None:
        if isinstance(self.phase, str):
            self.phase = convert_to_flyte_phase(self.phase)
        if self.phase not in _VALID_PHASES:
            raise ValueError(
                f"Resource phase must be a TaskExecution phase other than UNDEFINED, got "
                f"{self.phase!r}; Flyte treats UNDEFINED as a system error"
            )


class AsyncConnector(abc.ABC):
    """Base class of every connector.

    Set the class attributes `task_type_name` (required), `task_type_version` (default 0),
    `name` (defaults to the class name) and `metadata_type` (your `ResourceMeta` dataclass),
    then implement `create`, `get` and `delete`; `get_logs` and `get_metrics` are optional.
    Connection secrets and configs reach `create`, `get` and `delete` as keyword arguments
    (GetTaskLogs and GetTaskMetrics requests carry none: a daemon's connections file can).

    Set `sign_resource_meta = True` when the meta names state on the daemon's host (a
    process, a directory): the daemon then signs the bytes `create` returns and refuses
    any meta it did not sign before your methods see it (docs/security.md).
    `own_loop = True` runs every `async def` method on an event loop of this connector's
    own, in a thread of its own (for client libraries that block inside `async def`).
    `raw_inputs = True` hands `create` the wire `flyteidl2.task.Inputs` (or None) instead of
    Python values, for a connector that converts inputs itself.
    """

    name: ClassVar[str] = ""
    task_type_name: ClassVar[str] = ""
    task_type_version: ClassVar[int] = 0
    metadata_type: ClassVar[type[ResourceMeta]] = ResourceMeta
    sign_resource_meta: ClassVar[bool] = False
    own_loop: ClassVar[bool] = False
    raw_inputs: ClassVar[bool] = False

    _name_is_default: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            cls._name_is_default = not cls.__dict__["name"]
        if cls._name_is_default:
            cls.name = cls.__name__

    @abc.abstractmethod
    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: Optional[dict[str, Any]] = None,
        task_execution_metadata: Optional[TaskExecutionMetadata] = None,
        **kwargs: Any,
    ) -> ResourceMeta:
        """Start the job and return the metadata needed to find it again."""

    @abc.abstractmethod
    async def get(self, resource_meta: ResourceMeta, **kwargs: Any) -> Resource:
        """Report the job's phase, message, log links and (when done) outputs."""

    @abc.abstractmethod
    async def delete(self, resource_meta: ResourceMeta, **kwargs: Any) -> None:
        """Cancel the job. Must be idempotent: finished or unknown jobs are not an error."""

    async def get_logs(self, resource_meta: ResourceMeta, **kwargs: Any) -> GetTaskLogsResponse:
        """Optional: one `GetTaskLogsResponse`, or an async generator of pages.

        Keyword arguments include `token` (the page to resume from) and `lines`.
        """
        raise NotImplementedError

    async def get_metrics(
        self, resource_meta: ResourceMeta, **kwargs: Any
    ) -> GetTaskMetricsResponse:
        """Optional: a `GetTaskMetricsResponse` for `queries`, `start_time`, `end_time`, `step`."""
        raise NotImplementedError

    @property
    def task_category(self) -> tuple[str, int]:
        """The (task type, version) pair this connector serves."""
        return (self.task_type_name, self.task_type_version)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name!r} serving "
            f"{self.task_type_name!r} v{self.task_type_version}>"
        )


OPTIONAL_METHODS = ("get_logs", "get_metrics")
_KINDS: dict[tuple[type, str], Optional[MethodKind]] = {}


def template_custom(task_template: Any) -> dict[str, Any]:
    """A task template's `custom` as plain data (`{}` when it has none): where a task's own
    settings, and its `secrets` and `configs` mappings, are."""
    if not task_template.HasField("custom"):
        return {}
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(task_template.custom)  # type: ignore[no-any-return]


def task_custom(settings: Mapping[str, Any], secrets: Mapping[str, str],
                configs: Mapping[str, str]) -> dict[str, Any]:
    """A task's `custom` as our connectors read it (what `template_custom` gives back): its
    own settings, plus `secrets` (keyword -> secret name) and `configs` when it has any.
    The task classes of both Flyte SDKs (`connector_cli.adapters`) build theirs with it."""
    custom = dict(settings)
    if secrets:
        custom["secrets"] = dict(secrets)
    if configs:
        custom["configs"] = dict(configs)
    return custom


def method_kind(connector: AsyncConnector, method: str) -> Optional[MethodKind]:
    """How a connector method must be called, or None when an optional one is not declared.

    Cached per class so the hot path does no reflection.
    """
    key = (type(connector), method)
    try:
        return _KINDS[key]
    except KeyError:
        pass
    fn = getattr(type(connector), method, None)
    kind: Optional[MethodKind]
    if fn is None or (method in OPTIONAL_METHODS and fn is getattr(AsyncConnector, method)):
        kind = None
    elif inspect.isasyncgenfunction(fn):
        kind = "asyncgen"
    elif inspect.iscoroutinefunction(fn):
        kind = "async"
    else:
        kind = "sync"
    _KINDS[key] = kind
    return kind


def implements(connector: AsyncConnector, method: str) -> bool:
    """True when the connector declares `method` (used to answer UNIMPLEMENTED)."""
    return method_kind(connector, method) is not None


async def call_method(
    connector: AsyncConnector,
    method: str,
    /,
    *args: Any,
    executor: Optional[Executor] = None,
    **kwargs: Any,
) -> Any:
    """Call a connector method the right way for how it was written.

    `async def` runs on the loop (the connector's own loop thread when `own_loop` is set);
    plain `def` runs on `executor` (the loop's default when None) with the caller's context
    variables; an async generator is returned unstarted.
    """
    kind = method_kind(connector, method)
    if kind is None:
        raise NotImplementedError(f"{type(connector).__name__} does not implement {method}")
    fn: Callable[..., Any] = getattr(connector, method)
    if kind == "async":
        if connector.own_loop:
            from connector_cli.sdk.loops import loop_of

            return await loop_of(connector).run(fn(*args, **kwargs))
        return await fn(*args, **kwargs)
    if kind == "asyncgen":
        if connector.own_loop:
            from connector_cli.sdk.loops import loop_of

            return loop_of(connector).iterate(fn(*args, **kwargs))
        return fn(*args, **kwargs)
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    result = await loop.run_in_executor(executor, ctx.run, functools.partial(fn, *args, **kwargs))
    if inspect.isawaitable(result):
        result = await result
    return result
