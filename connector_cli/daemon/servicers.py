"""The gRPC servicers: request -> registry -> connector -> response, or one status code.

`TaskService` answers `flyteidl2.connector.AsyncConnectorService` and `MetadataService`
answers `ConnectorMetadataService`. Every failure goes through `status_for`, so an RPC
ends with OK, NOT_FOUND, INVALID_ARGUMENT, UNIMPLEMENTED, UNAVAILABLE (a connector's
`TransientError`) or INTERNAL and never UNKNOWN.
Secret values from `connection.secrets` are masked in every status detail and log line.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from concurrent.futures import Executor
from time import perf_counter
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterable, Optional, Protocol

import grpc
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector.service_pb2_grpc import (
    AsyncConnectorServiceServicer,
    ConnectorMetadataServiceServicer,
)

from connector_cli.daemon.loop import running_loop, task_on
from connector_cli.daemon.streams import until_draining
from connector_cli.dispatch import UNKNOWN_TASK_TYPE, Dispatcher, Scope
from connector_cli.errors import ConnectorNotFound, UsageError, describe_failure
from connector_cli.masking import current
from connector_cli.responses import ContractError
from connector_cli.sdk.registry import ConnectorRegistry
from connector_cli.shield import is_transient

if TYPE_CHECKING:
    from connector_cli.config import ServerConfig
    from connector_cli.signing import MetaSigner

logger = logging.getLogger(__name__)

MAX_DETAIL = 400
# Task types no connector serves get their own metrics label, as on the Flyte SDK server,
# up to this many distinct names (then UNKNOWN_TASK_TYPE): a caller cannot grow /metrics.
MAX_UNKNOWN_LABELS = 64
MAX_LABEL_LENGTH = 100
OPERATIONS = (
    "create", "get", "delete", "get_metrics", "get_logs", "list_connectors", "get_connector",
    "execute_sync", "list_agents", "get_agent",  # Flyte 1's agent API (servicers_v1)
)


class MetricsSink(Protocol):
    """What the servicers report to (`connector_cli.daemon.metrics.Metrics`, or nothing)."""

    def started(self, operation: str) -> None:
        """An RPC began."""

    def finished(self, operation: str, task_type: str, code: str, seconds: float) -> None:
        """An RPC ended with status `code` after `seconds`."""

    def inputs(self, task_type: str, size: int) -> None:
        """A CreateTask carried `size` bytes of inputs."""

    def event(self, name: str, task_type: str = "") -> None:
        """Count one `name` event (a shielded GetTask, a failed connections reload)."""


class NoMetrics:
    """Stands in for `connector_cli.daemon.metrics.Metrics` when metrics are off."""

    def started(self, operation: str) -> None:
        """Do nothing."""

    def finished(self, operation: str, task_type: str, code: str, seconds: float) -> None:
        """Do nothing."""

    def inputs(self, task_type: str, size: int) -> None:
        """Do nothing."""

    def event(self, name: str, task_type: str = "") -> None:
        """Do nothing."""


def status_for(exc: BaseException, where: str) -> tuple[grpc.StatusCode, str]:
    """The one mapping from an exception to a status code and a short, unmasked detail."""
    if isinstance(exc, ConnectorNotFound):
        return grpc.StatusCode.NOT_FOUND, str(exc)
    if isinstance(exc, UsageError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, NotImplementedError):
        return grpc.StatusCode.UNIMPLEMENTED, str(exc) or f"{where} is not implemented"
    if isinstance(exc, ContractError):
        return grpc.StatusCode.INTERNAL, str(exc)
    if is_transient(exc):
        return grpc.StatusCode.UNAVAILABLE, describe_failure(exc, where, transient=True,
                                                             limit=MAX_DETAIL)
    return grpc.StatusCode.INTERNAL, describe_failure(exc, where)


class _Base:
    """What both servicers share: the registry, the worker pool, metrics, and the RPCs in
    flight (counted, and their tasks kept, so a shutdown can cancel what outlived it)."""

    def __init__(
        self, registry: ConnectorRegistry, executor: Optional[Executor],
        metrics: Optional[MetricsSink] = None
    ) -> None:
        self.registry = registry
        self.executor = executor
        self.metrics: MetricsSink = metrics if metrics is not None else NoMetrics()
        self.in_flight = 0
        self.cancelled = 0
        self.tasks: set[asyncio.Task[Any]] = set()
        self.loop = running_loop()
        self.tracebacks = TracebackLimit()
        self._unknown: set[str] = set()

    def unknown_label(self, task_type: str) -> str:
        """The metrics label of a task type no connector serves (bounded in number)."""
        name = task_type[:MAX_LABEL_LENGTH]
        if name in self._unknown or len(self._unknown) < MAX_UNKNOWN_LABELS:
            self._unknown.add(name)
            return name
        return UNKNOWN_TASK_TYPE


class _Call:
    """One RPC's bookkeeping as an `async with` block: in-flight count and task, metrics,
    and turning any exception into a status (logged, secrets masked). Cancellation is
    counted and left to propagate."""

    __slots__ = ("service", "context", "operation", "task_type", "started", "scope", "task")

    def __init__(self, service: _Base, context: Any, operation: str, task_type: str,
                 label: Optional[str] = None) -> None:
        self.service, self.context = service, context
        self.operation, self.task_type = operation, task_type
        self.started = 0.0
        self.scope = Scope()
        if label is not None:
            self.scope.label = label
        self.task: Optional[asyncio.Task[Any]] = None

    async def __aenter__(self) -> _Call:
        service = self.service
        self.task = task_on(service.loop)
        service.tasks.add(self.task)
        service.in_flight += 1
        service.metrics.started(self.operation)
        self.started = perf_counter()
        return self

    async def __aexit__(self, kind: Any, exc: Optional[BaseException], tb: Any) -> None:
        if exc is None:
            self._end("OK")
        elif not isinstance(exc, Exception):
            self.service.cancelled += 1
            self._end("CANCELLED")
        else:
            task_type = self.task_type
            if len(task_type) > 100:  # a caller's name: never repeat megabytes of it
                task_type = task_type[:100] + "..."
            status, detail = status_for(exc, f"{self.operation} for task type {task_type!r}")
            if status is grpc.StatusCode.NOT_FOUND and self.scope.label == UNKNOWN_TASK_TYPE:
                self.scope.label = self.service.unknown_label(self.task_type)
            self._end(status.name)
            await _abort(self.context, self.operation, self.scope, exc, status, detail,
                         self.service.tracebacks)

    def _end(self, code: str) -> None:
        service = self.service
        service.tasks.discard(self.task)  # type: ignore[arg-type]
        service.in_flight -= 1
        service.metrics.finished(self.operation, self.scope.label, code,
                                 perf_counter() - self.started)


async def _abort(context: Any, operation: str, scope: Scope, exc: Exception,
                 code: grpc.StatusCode, detail: str, tracebacks: TracebackLimit) -> None:
    """Log (INTERNAL with the masked, clipped traceback) and end the RPC with `code`."""
    secrets = scope.secrets
    masker = None
    if secrets:
        from connector_cli.masking import SecretMasker

        masker = current() or SecretMasker(secrets.values())
    mask = masker.text if masker is not None else str
    detail = mask(detail)
    if len(detail) > MAX_DETAIL:
        detail = detail[: MAX_DETAIL - 3] + "..."
    if code is grpc.StatusCode.INTERNAL:
        if tracebacks.first(exc) or logger.isEnabledFor(logging.DEBUG):
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            logger.error("%s\n%s", detail, _clip_lines(mask(text).rstrip()))
        else:
            logger.error("%s (traceback logged once a minute per error; --log-level debug "
                         "logs every one)", " ".join(detail.split()))
    elif logger.isEnabledFor(logging.DEBUG):
        logger.debug("%s %s: %s", operation, code.name, detail)
    await context.abort(code, detail)


class TracebackLimit:
    """Which failures get their traceback logged: the first of each distinct error (its
    class and where it was raised) per `period` seconds. A caller that can make a
    connector fail must not be able to fill the disk with tracebacks."""

    def __init__(self, period: float = 60.0, size: int = 1024) -> None:
        self.period, self.size = period, size
        self.seen: dict[tuple[str, str, int], float] = {}

    def first(self, exc: BaseException) -> bool:
        """True when `exc`'s traceback should be logged now."""
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno) if tb is not None else ("", 0)
        key = (type(exc).__qualname__, *where)
        now = perf_counter()
        last = self.seen.get(key)
        if last is not None and now - last < self.period:
            return False
        if len(self.seen) >= self.size:
            self.seen.clear()
        self.seen[key] = now
        return True


def _forget_delete(deletes: set[asyncio.Future[Any]]) -> Any:
    def done(work: asyncio.Future[Any]) -> None:
        deletes.discard(work)
        if not work.cancelled():
            work.exception()  # retrieved: the RPC may have ended before the delete did

    return done


def _clip_lines(text: str, width: int = 500, lines: int = 60) -> str:
    """A traceback bounded in size: a hostile meta must not fill the log with its bytes."""
    if len(text) <= width * 4:
        return text
    kept = [line if len(line) <= width else line[:width] + "..." for line in text.splitlines()]
    if len(kept) > lines:
        kept = kept[:10] + [f"... {len(kept) - lines} lines left out ..."] + kept[10 - lines:]
    return "\n".join(kept)


class TaskService(_Base, AsyncConnectorServiceServicer):
    """AsyncConnectorService: CreateTask, GetTask, DeleteTask, GetTaskMetrics, GetTaskLogs."""

    def __init__(
        self, registry: ConnectorRegistry, executor: Optional[Executor],
        metrics: Optional[MetricsSink] = None, signer: Optional[MetaSigner] = None,
        config: Optional[ServerConfig] = None,
    ) -> None:
        super().__init__(registry, executor, metrics)
        self.dispatch = Dispatcher(registry, executor, on_inputs=self.metrics.inputs,
                                   signer=signer, **_features(config, self.metrics))
        self.deletes: set[asyncio.Future[Any]] = set()
        self.draining = asyncio.Event()  # set when the daemon drains: log streams end

    async def CreateTask(self, request: pb.CreateTaskRequest, context: Any) -> Any:
        async with _Call(self, context, "create", request.template.type) as call:
            response = await self.dispatch.create_wire(request, call.scope)
        return response

    async def GetTask(self, request: pb.GetTaskRequest, context: Any) -> Any:
        async with _Call(self, context, "get", request.task_category.name) as call:
            response = await self.dispatch.get_wire(request, call.scope)
        return response

    async def DeleteTask(self, request: pb.DeleteTaskRequest, context: Any) -> Any:
        """Runs the delete as its own task, shielded: a shutdown that ends the RPC lets an
        accepted delete finish (the server waits for `deletes`) instead of abandoning it."""
        async with _Call(self, context, "delete", request.task_category.name) as call:
            work = asyncio.ensure_future(self.dispatch.delete(request, call.scope))
            self.deletes.add(work)
            work.add_done_callback(_forget_delete(self.deletes))
            response = await asyncio.shield(work)
        return response

    async def GetTaskMetrics(self, request: pb.GetTaskMetricsRequest, context: Any) -> Any:
        async with _Call(self, context, "get_metrics", request.task_category.name) as call:
            response = await self.dispatch.get_metrics(request, call.scope)
        return response

    async def GetTaskLogs(
        self, request: pb.GetTaskLogsRequest, context: Any
    ) -> AsyncIterator[pb.GetTaskLogsResponse]:
        async with _Call(self, context, "get_logs", request.task_category.name) as call:
            pages = self.dispatch.get_logs(request, call.scope)
            async for page in until_draining(pages, self.draining, context):
                yield page


class MetadataService(_Base, ConnectorMetadataServiceServicer):
    """ConnectorMetadataService: which connectors and task types this daemon serves."""

    async def ListConnectors(self, request: pb.ListConnectorsRequest, context: Any) -> Any:
        async with _Call(self, context, "list_connectors", "", label=""):
            response = pb.ListConnectorsResponse(connectors=self.registry.list_connectors())
        return response

    async def GetConnector(self, request: pb.GetConnectorRequest, context: Any) -> Any:
        async with _Call(self, context, "get_connector", "", label=""):
            response = pb.GetConnectorResponse(
                connector=self.registry.get_connector_metadata(request.name)
            )
        return response


def _features(config: Optional[ServerConfig], metrics: MetricsSink) -> dict[str, Any]:
    """The dispatcher's options for what the daemon adds around connectors (connections,
    transient failures, large answers, signing foreign metas), from the serve options."""
    from connector_cli.config import ServerConfig
    from connector_cli.shield import JobMemory

    config = config or ServerConfig()
    features: dict[str, Any] = {
        "max_response_bytes": config.max_response_bytes,
        "sign_foreign": config.sign_foreign_metas,
        "unsigned_until": config.unsigned_metas_until,
    }
    if config.get_error_grace > 0:
        features["memory"] = JobMemory(config.get_error_grace)
        features["on_shielded"] = lambda task_type: metrics.event("get_shielded", task_type)
    if config.connections:
        from connector_cli.connections import ConnectionsSource
        from connector_cli.errors import StartupError, UsageError

        try:
            features["connections"] = ConnectionsSource(
                config.connections,
                on_failure=lambda: metrics.event("connections_reload_failures"))
        except UsageError as exc:
            raise StartupError(f"cannot start: {exc}") from None
    return features


def service_names() -> Iterable[str]:
    """The full names of the two services, for health and reflection."""
    from flyteidl2.connector import service_pb2

    return tuple(s.full_name for s in service_pb2.DESCRIPTOR.services_by_name.values())

