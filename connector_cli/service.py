"""The gRPC servicers: request -> registry -> connector -> response, or one status code.

`TaskService` answers `flyteidl2.connector.AsyncConnectorService` and `MetadataService`
answers `ConnectorMetadataService`. Every failure goes through `status_for`, so an RPC
ends with OK, NOT_FOUND, INVALID_ARGUMENT, UNIMPLEMENTED or INTERNAL and never UNKNOWN.
Secret values from `connection.secrets` are masked in every status detail and log line.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import traceback
from concurrent.futures import Executor
from typing import Any, AsyncIterator, Iterable, Mapping, Optional

import grpc
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector.service_pb2_grpc import (
    AsyncConnectorServiceServicer,
    ConnectorMetadataServiceServicer,
)
from flyteidl2.core.execution_pb2 import TaskExecution

from connector_cli.errors import ConnectorNotFound, LiteralError, UsageError
from connector_cli.meta import ResourceMeta
from connector_cli.registry import ConnectorRegistry
from connector_cli.sdk import AsyncConnector, Resource, call_method, implements
from connector_cli.secrets import Connection, SecretMasker

logger = logging.getLogger(__name__)

UNKNOWN_TASK_TYPE = "unknown"
MAX_DETAIL = 400
_RESERVED = {
    "create": frozenset({"task_template", "output_prefix", "inputs", "task_execution_metadata"}),
    "get": frozenset({"resource_meta"}),
    "delete": frozenset({"resource_meta"}),
}
_NO_SECRETS: Mapping[str, str] = {}
OPERATIONS = (
    "create", "get", "delete", "get_metrics", "get_logs", "list_connectors", "get_connector"
)


class ContractError(Exception):
    """A connector broke the SDK contract (e.g. `create` returned no ResourceMeta): INTERNAL."""


class NoMetrics:
    """Stands in for `connector_cli.metrics.Metrics` when metrics are off: records nothing."""

    def started(self, operation: str) -> None:
        """Do nothing."""

    def finished(self, operation: str, task_type: str, code: str, seconds: float) -> None:
        """Do nothing."""

    def inputs(self, task_type: str, size: int) -> None:
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
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return grpc.StatusCode.INTERNAL, f"{where} failed: {type(exc).__name__}: {line}".rstrip(": ")


def connection_kwargs(request: Any, operation: str) -> tuple[dict[str, str], Mapping[str, str]]:
    """A request's connection as keyword arguments, and its secrets (for masking).

    A key that is both a secret and a config, or that would replace one of the method's
    own arguments, is INVALID_ARGUMENT naming the key (never the value).
    """
    if not request.HasField("connection"):
        return {}, _NO_SECRETS
    conn = request.connection
    if not conn.secrets and not conn.configs:
        return {}, _NO_SECRETS
    kwargs = Connection(secrets=conn.secrets, configs=conn.configs).kwargs()
    taken = sorted(kwargs.keys() & (_RESERVED[operation] | {"executor"}))
    if taken:
        raise UsageError(
            f"connection key {taken[0]!r} clashes with an argument of the connector's "
            f"{operation} method; rename it"
        )
    return kwargs, conn.secrets


def fill_resource(out: pb.Resource, resource: Any, where: str) -> None:
    """Write a connector's `Resource` into the wire message `out` (no copies); outputs
    are converted by inference, as GetTask carries no interface."""
    if isinstance(resource, pb.Resource):
        if resource.phase == 0:
            raise ContractError(f"{where} returned phase UNDEFINED; return a real phase")
        out.CopyFrom(resource)
        return
    if not isinstance(resource, Resource):
        raise ContractError(f"{where} returned {type(resource).__name__}; return a Resource")
    phase = resource.phase
    if not isinstance(phase, int) or phase == 0:
        phase = Resource(phase).phase  # a phase set after construction: validate it now
    if resource.outputs is not None and not _set_outputs(out, resource.outputs, where):
        return
    out.phase = phase
    if resource.message:
        out.message = resource.message
    if resource.log_links:
        out.log_links.extend(resource.log_links)
    if resource.custom_info:
        try:
            out.custom_info.update(resource.custom_info)
        except (TypeError, ValueError) as exc:
            raise ContractError(
                f"{where} returned custom_info that is not JSON data: {exc}"
            ) from None


def _set_outputs(out: pb.Resource, outputs: Any, where: str) -> bool:
    """Convert outputs into `out`; on failure make `out` a FAILED resource and say False
    (retrying GetTask cannot fix a connector's outputs, so fail the task, not the RPC)."""
    from connector_cli.literals import outputs_to_proto

    try:
        converted = outputs_to_proto(outputs, None)
    except LiteralError as exc:
        logger.error("%s returned outputs that cannot be converted: %s", where, exc)
        out.phase = TaskExecution.FAILED
        out.message = f"the connector's outputs cannot be converted to Flyte literals: {exc}"
        return False
    if converted is not None:
        out.outputs.CopyFrom(converted)
    return True


class _Base:
    """What both servicers share: the registry, the worker pool and metrics."""

    def __init__(
        self, registry: ConnectorRegistry, executor: Optional[Executor], metrics: Any = None
    ) -> None:
        self.registry = registry
        self.executor = executor
        self.metrics = metrics if metrics is not None else NoMetrics()
        self.in_flight = 0
        self.cancelled = 0
        self.tasks: set[asyncio.Task[Any]] = set()


class _Call:
    """One RPC's bookkeeping: in-flight count, metrics, and turning any exception into
    a status (logged, secrets masked) as the block exits.

    `label` is the task type once a connector serves it (metrics labels stay bounded);
    `secrets` are the values to mask.
    """

    __slots__ = (
        "service", "context", "operation", "task_type", "label", "secrets", "started", "task"
    )

    def __init__(self, service: _Base, context: Any, operation: str, task_type: str) -> None:
        self.service, self.context = service, context
        self.operation, self.task_type = operation, task_type
        self.label = UNKNOWN_TASK_TYPE
        self.secrets: Mapping[str, str] = _NO_SECRETS
        self.started = 0.0

    async def __aenter__(self) -> _Call:
        self.task = asyncio.current_task()
        self.service.tasks.add(self.task)  # type: ignore[arg-type]
        self.service.in_flight += 1
        self.service.metrics.started(self.operation)
        self.started = time.perf_counter()
        return self

    async def __aexit__(self, kind: Any, exc: Optional[BaseException], tb: Any) -> None:
        service = self.service
        service.tasks.discard(self.task)  # type: ignore[arg-type]
        service.in_flight -= 1
        if exc is None:
            code = "OK"
        elif isinstance(exc, Exception):
            status, detail = status_for(exc, f"{self.operation} for task type {self.task_type!r}")
            code = status.name
        else:
            code = "CANCELLED"
            service.cancelled += 1
        service.metrics.finished(
            self.operation, self.label, code, time.perf_counter() - self.started
        )
        if isinstance(exc, Exception):
            await self._abort(exc, status, detail)

    async def _abort(self, exc: Exception, code: grpc.StatusCode, detail: str) -> None:
        """Log (INTERNAL with the masked traceback) and end the RPC with `code`."""
        mask = SecretMasker(self.secrets.values()).text if self.secrets else str
        detail = mask(detail)
        if len(detail) > MAX_DETAIL:
            detail = detail[: MAX_DETAIL - 3] + "..."
        if code is grpc.StatusCode.INTERNAL:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            logger.error("%s\n%s", detail, mask(text).rstrip())
        elif logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s: %s", self.operation, code.name, detail)
        await self.context.abort(code, detail)


class TaskService(_Base, AsyncConnectorServiceServicer):
    """AsyncConnectorService: CreateTask, GetTask, DeleteTask, GetTaskMetrics, GetTaskLogs."""

    async def CreateTask(self, request: pb.CreateTaskRequest, context: Any) -> Any:
        template = request.template
        async with _Call(self, context, "create", template.type) as call:
            connector = self.registry.get_connector(template.type, template.task_type_version)
            call.label = template.type
            kwargs, call.secrets = connection_kwargs(request, "create")
            meta = await call_method(
                connector, "create", executor=self.executor, task_template=template,
                output_prefix=request.output_prefix, inputs=self._inputs(request, call.label),
                task_execution_metadata=request.task_execution_metadata
                if request.HasField("task_execution_metadata") else None,
                **kwargs,
            )
            if not isinstance(meta, ResourceMeta):
                raise ContractError(
                    f"{connector.name}.create returned {type(meta).__name__}; "
                    "return a ResourceMeta"
                )
            response = pb.CreateTaskResponse(resource_meta=meta.encode())
        return response

    def _inputs(self, request: pb.CreateTaskRequest, label: str) -> Optional[dict[str, Any]]:
        from connector_cli.literals import inputs_to_python

        template = request.template
        interface = template.interface if template.HasField("interface") else None
        if not request.HasField("inputs"):
            return inputs_to_python(None, interface)
        self.metrics.inputs(label, request.inputs.ByteSize())
        return inputs_to_python(request.inputs, interface)

    async def GetTask(self, request: pb.GetTaskRequest, context: Any) -> Any:
        category = request.task_category
        async with _Call(self, context, "get", category.name) as call:
            connector = self.registry.get_connector(category.name, category.version)
            call.label = category.name
            meta = connector.metadata_type.decode(request.resource_meta)
            kwargs, call.secrets = connection_kwargs(request, "get")
            resource = await call_method(
                connector, "get", executor=self.executor, resource_meta=meta, **kwargs
            )
            response = pb.GetTaskResponse()
            fill_resource(response.resource, resource, f"{connector.name}.get")
        return response

    async def DeleteTask(self, request: pb.DeleteTaskRequest, context: Any) -> Any:
        category = request.task_category
        async with _Call(self, context, "delete", category.name) as call:
            connector = self.registry.get_connector(category.name, category.version)
            call.label = category.name
            meta = connector.metadata_type.decode(request.resource_meta)
            kwargs, call.secrets = connection_kwargs(request, "delete")
            await call_method(
                connector, "delete", executor=self.executor, resource_meta=meta, **kwargs
            )
        return pb.DeleteTaskResponse()

    async def GetTaskMetrics(self, request: pb.GetTaskMetricsRequest, context: Any) -> Any:
        category = request.task_category
        async with _Call(self, context, "get_metrics", category.name) as call:
            connector = self._optional(category, "get_metrics")
            call.label = category.name
            meta = connector.metadata_type.decode(request.resource_meta)
            response = await call_method(
                connector, "get_metrics", executor=self.executor, resource_meta=meta,
                queries=list(request.queries), start_time=request.start_time,
                end_time=request.end_time, step=request.step,
            )
            if not isinstance(response, pb.GetTaskMetricsResponse):
                raise ContractError(
                    f"{connector.name}.get_metrics returned {type(response).__name__}; "
                    "return a GetTaskMetricsResponse"
                )
        return response

    async def GetTaskLogs(
        self, request: pb.GetTaskLogsRequest, context: Any
    ) -> AsyncIterator[pb.GetTaskLogsResponse]:
        category = request.task_category
        async with _Call(self, context, "get_logs", category.name) as call:
            connector = self._optional(category, "get_logs")
            call.label = category.name
            meta = connector.metadata_type.decode(request.resource_meta)
            result = await call_method(
                connector, "get_logs", executor=self.executor, resource_meta=meta,
                token=request.token, lines=request.lines,
            )
            async for page in self._pages(result, f"{connector.name}.get_logs"):
                yield page

    def _optional(self, category: pb.TaskCategory, method: str) -> AsyncConnector:
        connector = self.registry.get_connector(category.name, category.version)
        if not implements(connector, method):
            raise NotImplementedError(
                f"connector {connector.name!r} (task type {category.name!r}) does not "
                f"implement {method}"
            )
        return connector

    async def _pages(self, result: Any, where: str) -> AsyncIterator[pb.GetTaskLogsResponse]:
        """The messages of what get_logs returned: one response, or a generator of pages."""
        if inspect.isasyncgen(result):
            try:
                async for page in result:
                    yield _log_message(page, where)
            finally:
                await result.aclose()
        elif inspect.isgenerator(result):
            loop, done = asyncio.get_running_loop(), object()
            while (page := await loop.run_in_executor(self.executor, next, result, done)) \
                    is not done:
                yield _log_message(page, where)
        else:
            yield _log_message(result, where)


def _log_message(page: Any, where: str) -> pb.GetTaskLogsResponse:
    if isinstance(page, pb.GetTaskLogsResponse):
        return page
    if isinstance(page, pb.GetTaskLogsResponseBody):
        return pb.GetTaskLogsResponse(body=page)
    if isinstance(page, pb.GetTaskLogsResponseHeader):
        return pb.GetTaskLogsResponse(header=page)
    raise ContractError(
        f"{where} produced {type(page).__name__}; return or yield GetTaskLogsResponse messages"
    )


class MetadataService(_Base, ConnectorMetadataServiceServicer):
    """ConnectorMetadataService: which connectors and task types this daemon serves."""

    async def ListConnectors(self, request: pb.ListConnectorsRequest, context: Any) -> Any:
        async with _Call(self, context, "list_connectors", "") as call:
            call.label = ""
            response = pb.ListConnectorsResponse(connectors=self.registry.list_connectors())
        return response

    async def GetConnector(self, request: pb.GetConnectorRequest, context: Any) -> Any:
        async with _Call(self, context, "get_connector", "") as call:
            call.label = ""
            response = pb.GetConnectorResponse(
                connector=self.registry.get_connector_metadata(request.name)
            )
        return response


def service_names() -> Iterable[str]:
    """The full names of the two services, for health and reflection."""
    from flyteidl2.connector import service_pb2

    return tuple(s.full_name for s in service_pb2.DESCRIPTOR.services_by_name.values())

