"""Flyte 1's agent API on the daemon's port, beside Flyte 2's connector API.

Flyte 1's propeller calls `flyteidl.service.AsyncAgentService`, `SyncAgentService` and
`AgentMetadataService`; their method paths differ from flyteidl2's, so one gRPC server
hosts both generations. Each v1 call is converted to its v2 request
(`connector_cli.v1_messages`) and answered by the v2 servicer's own method, so both
generations share one dispatcher and one set of books: in-flight count and drain, metrics,
status codes, masking, signed metas, shielded deletes. Only the answer is converted back.

The handlers are built by their first call (`BuiltOnFirstCall`): a daemon no Flyte 1
backend calls never imports `flyteidl`.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, AsyncIterator, Optional

import grpc
from flyteidl2.connector import connector_pb2 as pb

from connector_cli.daemon.gate import RequestGate
from connector_cli.daemon.lazy_services import BuiltOnFirstCall
from connector_cli.daemon.raw_handlers import raw_handler
from connector_cli.daemon.servicers import _Call, status_for
from connector_cli.errors import UsageError

if TYPE_CHECKING:
    from connector_cli.daemon.servicers import MetadataService, TaskService

PACKAGE = "flyteidl.service"
TASKS, SYNC, METADATA = (f"{PACKAGE}.AsyncAgentService", f"{PACKAGE}.SyncAgentService",
                         f"{PACKAGE}.AgentMetadataService")
SERVICE_NAMES = (TASKS, SYNC, METADATA)
DESCRIPTOR_MODULE = "flyteidl.service.agent_pb2"
INSTALL_HINT = "pip install 'flyte-connector[flyte1]'"


def available() -> bool:
    """True when the `flyteidl` (v1) package is installed (found without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec(DESCRIPTOR_MODULE) is not None
    except ModuleNotFoundError:
        return False


def served_apis(requested: Optional[tuple[str, ...]]) -> tuple[str, ...]:
    """The API generations to serve: those requested (`StartupError` when v1 is asked for
    without `flyteidl`), or by default v2 plus v1 when `flyteidl` is installed."""
    from connector_cli.errors import StartupError

    if requested == ("v2",):
        return requested
    if requested is None:
        return ("v1", "v2") if available() else ("v2",)
    if "v1" in requested and not available():
        raise StartupError(
            "--api v1 (Flyte 1's agent API) needs the flyteidl package; install it with: "
            + INSTALL_HINT
        )
    return tuple(sorted(set(requested)))


def service_names_for(apis: tuple[str, ...]) -> tuple[str, ...]:
    """The connector services' full names for health and reflection."""
    from connector_cli.daemon.servicers import service_names

    names: tuple[str, ...] = tuple(service_names()) if "v2" in apis else ()
    return names + (SERVICE_NAMES if "v1" in apis else ())


def api_label(apis: tuple[str, ...]) -> str:
    """'Flyte 1 and Flyte 2 APIs', for the ready log line."""
    names = " and ".join({"v1": "Flyte 1", "v2": "Flyte 2"}[a] for a in apis)
    return f"{names} API{'s' if len(apis) > 1 else ''}"


def v1_handlers(tasks: TaskService, metadata: MetadataService,
                gate: RequestGate) -> tuple[grpc.GenericRpcHandler, ...]:
    """The three v1 services as handlers built by their first call."""
    def build(name: str) -> grpc.GenericRpcHandler:
        from flyteidl.service import agent_pb2

        servicer = {TASKS: AgentTaskService, SYNC: AgentSyncService,
                    METADATA: AgentMetadataService}[name](tasks, metadata)
        service = agent_pb2.DESCRIPTOR.services_by_name[name.rpartition(".")[2]]
        return raw_handler(service, servicer, gate)

    return tuple(BuiltOnFirstCall(name, functools.partial(build, name))
                 for name in SERVICE_NAMES)


class _V1:
    """What the v1 servicers hold: the v2 servicers that answer for them."""

    def __init__(self, tasks: TaskService, metadata: MetadataService) -> None:
        self.tasks, self.metadata = tasks, metadata


class AgentTaskService(_V1):
    """flyteidl.service.AsyncAgentService, answered by the v2 `TaskService`."""

    # A v1 CreateTaskRequest's bytes parse as the v2 one (`v1_messages`). Parsed once as
    # v2, instead of as v1 and then serialized and parsed again: 1.4 us against 6 us for
    # the bench's 441-byte request, in a tight loop. What only v1 has (the execution
    # metadata's `overrides`) rides along as an unknown field, which no connector reads
    # (flytekit's models have no `overrides` either).
    parsed_as = {"CreateTask": pb.CreateTaskRequest}

    async def CreateTask(self, request: pb.CreateTaskRequest, context: Any) -> Any:
        # v1 and v2 CreateTaskResponse are one field, `resource_meta` = 1: the bytes serve both
        return await self.tasks.CreateTask(request, context)

    async def GetTask(self, request: Any, context: Any) -> Any:
        from connector_cli.v1_messages import get_request, get_response

        v2 = get_request(request)
        data = await self.tasks.GetTask(v2, context)
        raw = data if data.__class__ is bytes else data.SerializeToString()
        answer = get_response(raw)
        limit = self.tasks.dispatch.max_response_bytes
        if len(raw) > limit - 8 and answer.ByteSize() > limit:
            # the deprecated `state` makes the answer a few bytes longer than the v2 one
            # the dispatcher fitted: at the edge it would cross the propeller's limit
            from connector_cli.offload import fit

            raw = await fit(raw, limit - (answer.ByteSize() - len(raw)), v2.output_prefix,
                            f"{v2.task_category.name}.get")
            answer = get_response(raw)
        return answer

    async def DeleteTask(self, request: Any, context: Any) -> Any:
        from flyteidl.admin.agent_pb2 import DeleteTaskResponse

        from connector_cli.v1_messages import delete_request

        await self.tasks.DeleteTask(delete_request(request), context)
        return DeleteTaskResponse()

    async def GetTaskMetrics(self, request: Any, context: Any) -> Any:
        from connector_cli.v1_messages import metrics_request, metrics_response

        return metrics_response(await self.tasks.GetTaskMetrics(metrics_request(request), context))

    async def GetTaskLogs(self, request: Any, context: Any) -> AsyncIterator[Any]:
        from connector_cli.v1_messages import logs_request, logs_response

        async for page in self.tasks.GetTaskLogs(logs_request(request), context):
            yield logs_response(page)


class AgentSyncService(_V1):
    """flyteidl.service.SyncAgentService: ExecuteTaskSync for connectors with `is_sync`."""

    async def ExecuteTaskSync(
        self, requests: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        """The header (template, output prefix), then the inputs; one header answer: the
        connector's create and get in one call. A connector that raises answers a FAILED
        resource with an `agent_error`, which the propeller records as the task's error."""
        from flyteidl.admin import agent_pb2 as v1

        header, inputs = await _read_sync_request(requests, context)
        template = header.template
        async with _Call(self.tasks, context, "execute_sync", template.type) as call:
            resource = await self._execute(header, inputs, call)
        yield v1.ExecuteTaskSyncResponse(header=v1.ExecuteTaskSyncResponseHeader(resource=resource))

    async def _execute(self, header: Any, inputs: Any, call: _Call) -> Any:
        from flyteidl2.connector import connector_pb2 as pb

        from connector_cli import v1_messages as m

        dispatch = self.tasks.dispatch
        template = header.template
        route = dispatch.route(template.type, template.task_type_version, call.scope)
        if not getattr(route.connector, "is_sync", False):
            raise UsageError(
                f"connector {route.connector.name!r} serves task type {template.type!r} "
                "asynchronously (ListAgents says is_sync false); call CreateTask instead"
            )
        try:
            created = await dispatch.create_wire(m.sync_request(header, inputs), call.scope)
            got = await dispatch.get_wire(pb.GetTaskRequest(
                resource_meta=pb.CreateTaskResponse.FromString(created).resource_meta,
                task_category=pb.TaskCategory(name=route.name, version=route.version),
                output_prefix=header.output_prefix,
            ), call.scope)
        except Exception as exc:  # the connector's failure is the task's, not the RPC's
            code, detail = status_for(exc, f"{route.connector.name}.do")
            if code is not grpc.StatusCode.INTERNAL:
                raise
            return m.failed_resource(detail, type(exc).__name__)
        return m.get_response(got).resource


async def _read_sync_request(requests: AsyncIterator[Any], context: Any) -> tuple[Any, Any]:
    """ExecuteTaskSync's header and inputs (None when the stream ends after the header)."""
    parts = requests.__aiter__()
    first = await _next(parts)
    if first is None or first.WhichOneof("part") != "header":
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            "ExecuteTaskSync expects a header (template, output_prefix) first")
    second = await _next(parts)
    if second is not None and second.WhichOneof("part") != "inputs":
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            "ExecuteTaskSync expects the inputs after the header")
    return first.header, (second.inputs if second is not None else None)  # type: ignore[union-attr]


async def _next(parts: AsyncIterator[Any]) -> Optional[Any]:
    try:
        return await parts.__anext__()
    except StopAsyncIteration:
        return None


class AgentMetadataService(_V1):
    """flyteidl.service.AgentMetadataService: ListAgents and GetAgent from the registry."""

    def __init__(self, tasks: TaskService, metadata: MetadataService) -> None:
        super().__init__(tasks, metadata)
        self._agents: list[Any] = []
        self._generation = -1

    def agents(self) -> list[Any]:
        """One `Agent` per connector name, in registration order (rebuilt on change)."""
        registry = self.metadata.registry
        if self._generation != registry.generation:
            from connector_cli.v1_messages import agents

            grouped: dict[str, tuple[list[tuple[str, int]], bool]] = {}
            for row in registry.registrations():
                cats, _ = grouped.setdefault(
                    row.connector.name, ([], bool(getattr(row.connector, "is_sync", False))))
                cats.append(row.category)
            self._agents = agents((name, cats, sync) for name, (cats, sync) in grouped.items())
            self._generation = registry.generation
        return self._agents

    async def ListAgents(self, request: Any, context: Any) -> Any:
        from flyteidl.admin.agent_pb2 import ListAgentsResponse

        async with _Call(self.metadata, context, "list_agents", "", label=""):
            response = ListAgentsResponse(agents=self.agents())
        return response

    async def GetAgent(self, request: Any, context: Any) -> Any:
        from flyteidl.admin.agent_pb2 import GetAgentResponse

        async with _Call(self.metadata, context, "get_agent", "", label=""):
            self.metadata.registry.get_connector_metadata(request.name)  # NOT_FOUND, with a hint
            agent = next(a for a in self.agents() if a.name == request.name)
            response = GetAgentResponse(agent=agent)
        return response
