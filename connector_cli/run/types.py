"""What a `flyte-connector test` run is made of: the request sent to the connector, the
polling options, the result, and the two protocols around the loop (`RunTarget`, where
the connector runs, and `RunObserver`, who shows the progress). See connector_cli.run.runner.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Optional, Protocol

from connector_cli.errors import UsageError
from connector_cli.sdk.registry import Category

if TYPE_CHECKING:
    from flyteidl2.connector.connector_pb2 import (
        GetTaskMetricsResponse,
        Resource,
        TaskExecutionMetadata,
    )
    from flyteidl2.core.execution_pb2 import TaskLog
    from flyteidl2.core.tasks_pb2 import TaskTemplate
    from flyteidl2.task.common_pb2 import Inputs, Outputs

    from connector_cli.sdk.secrets import Connection

LOG_MODES = ("none", "end", "follow")
# The Flyte backend fails a task after more than 5 failed GetTask calls, counted over the
# task's whole life (the count never resets); `test` tolerates as many by default.
GET_FAILURES = 5
EXIT_CODES = {"succeeded": 0, "failed": 1, "aborted": 1, "error": 1, "invalid_input": 2,
              "timed_out": 3, "interrupted": 130}


class Unsupported(Exception):
    """The connector does not implement an optional method (get_logs, get_metrics)."""


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """What is sent to the connector: the same fields as a CreateTaskRequest."""

    template: TaskTemplate
    inputs: Optional[Inputs]
    output_prefix: str
    task_execution_metadata: TaskExecutionMetadata
    connection: Connection

    @property
    def category(self) -> Category:
        """The (task type, version) of the template."""
        return (self.template.type, self.template.task_type_version)

    def connection_proto(self) -> Any:
        """The `flyteidl2.core.Connection` every call carries (None when empty)."""
        from flyteidl2.core.security_pb2 import Connection

        conn = self.connection
        if not conn.secrets and not conn.configs:
            return None
        return Connection(secrets=dict(conn.secrets), configs=dict(conn.configs))


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How to poll and when to stop. `timeout` None means no limit."""

    poll_interval: float = 1.0
    max_poll_interval: float = 15.0
    backoff_after: float = 60.0
    timeout: Optional[float] = None
    keep: bool = False
    logs: str = "none"
    metrics: bool = False
    delete_timeout: float = 30.0
    epilogue_timeout: float = 30.0
    get_failures: int = GET_FAILURES


    def __post_init__(self) -> None:
        if self.poll_interval <= 0:
            raise UsageError("--poll-interval must be more than 0 seconds")
        if self.timeout is not None and self.timeout <= 0:
            raise UsageError("--timeout must be more than 0 seconds")
        if self.get_failures < 0:
            raise UsageError("--get-failures must be 0 or more")
        if self.logs not in LOG_MODES:
            raise UsageError(f"logs must be one of {', '.join(LOG_MODES)}, got {self.logs!r}")


class RunTarget(Protocol):
    """Where the connector runs. Every method raises the connector's error as is."""

    description: str
    connector_name: str  # set by `check`: the connector serving the task, for error lines

    async def check(self, category: Category) -> None:
        """Raise `ConnectorNotFound` (listing what is served) unless `category` is served."""

    async def create(self, request: RunRequest) -> bytes:
        """Start the job; return the encoded resource meta."""

    async def get(self, request: RunRequest, resource_meta: bytes) -> Resource:
        """Poll the job; a `flyteidl2.connector.Resource` with outputs as literals."""

    async def delete(self, request: RunRequest, resource_meta: bytes) -> None:
        """Cancel the job."""

    async def log_page(self, request: RunRequest, resource_meta: bytes,
                       token: str) -> tuple[list[str], str]:
        """One page of log lines from `token` and the next page's token ('' on the last)."""

    async def metrics(self, request: RunRequest, resource_meta: bytes, start: float,
                      end: float) -> GetTaskMetricsResponse:
        """The job's metrics between two wall-clock times."""

    async def close(self) -> None:
        """Release connections and threads."""


@dataclasses.dataclass(frozen=True)
class PollUpdate:
    """One `get` answer as the observer sees it."""

    phase: str
    message: str
    polls: int
    elapsed: float
    phase_changed: bool
    new_log_links: tuple[TaskLog, ...]


class RunObserver:
    """Progress callbacks; override the ones you render. All are called on the loop thread."""

    def created(self, resource_meta: bytes) -> None:
        """The job exists; `resource_meta` is what later calls send."""

    def polled(self, update: PollUpdate) -> None:
        """A `get` answered."""

    def log_lines(self, lines: list[str]) -> None:
        """New log lines from `get_logs`."""

    def note(self, text: str) -> None:
        """Something worth one line: a skipped feature, a stop reason."""

    def deleting(self, reason: str) -> None:
        """About to call `delete` because of `reason`."""

    def deleted(self, error: Optional[str]) -> None:
        """`delete` returned (error None) or failed."""


@dataclasses.dataclass
class RunResult:
    """How a run ended. `status` decides the exit code (see `EXIT_CODES`)."""

    status: str = "error"
    phase: str = ""
    message: str = ""
    outputs: Optional[Outputs] = None
    output_values: dict[str, Any] = dataclasses.field(default_factory=dict)
    log_links: list[TaskLog] = dataclasses.field(default_factory=list)
    custom_info: dict[str, Any] = dataclasses.field(default_factory=dict)
    resource_meta: Optional[bytes] = None
    duration: float = 0.0
    polls: int = 0
    deleted: bool = False
    delete_error: Optional[str] = None
    error: Optional[str] = None
    exception: Optional[BaseException] = None
    logs: list[str] = dataclasses.field(default_factory=list)
    metrics: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 succeeded, 1 failed/aborted/error, 2 bad input, 3 timed out, 130 interrupted."""
        return EXIT_CODES[self.status]
