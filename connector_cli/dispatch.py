"""AsyncConnectorService's operations on wire messages, with no gRPC in sight.

Each function takes a request message (`CreateTaskRequest`, `GetTaskRequest`, ...), finds
the connector, decodes the resource meta, turns the connection into keyword arguments,
calls the connector the right way for how its method was written, and builds the response
message. The daemon's servicers (`connector_cli.daemon.servicers`) and the in-process runner of
`flyte-connector test` both call these, so what works in one works in the other.

CreateTask and GetTask, the calls a daemon answers most, answer wire bytes
(`create_wire`, `get_wire`, written by `connector_cli.wire`); `create` and `get` parse those
same bytes back into the response message for the runner.

A `Scope` records what the caller needs to know about a call as it goes: the task type
once a connector serves it (a bounded metrics label) and the secret values to mask.

For a connector with `sign_resource_meta`, `create`'s meta is signed here and every later
call's meta is verified here, before the connector is called (`connector_cli.signing`).

What the daemon adds around a connector also lives here, each off the hot path unless
configured: the connections file's secrets and configs (`connector_cli.connections`),
the last known state answered while `get` fails transiently (`connector_cli.shield`), and
answers too large for the backend moved to outputs.pb (`connector_cli.offload`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Mapping, Optional

from flyteidl2.connector import connector_pb2 as pb

from connector_cli import wire
from connector_cli.connection_args import connection_kwargs
from connector_cli.errors import UsageError
from connector_cli.masking import current, mask_resource
from connector_cli.offload import DEFAULT_MAX_RESPONSE_BYTES, fit
from connector_cli.responses import ContractError, fill_resource, log_message
from connector_cli.routes import Route
from connector_cli.sdk.connector import (
    AsyncConnector,
    Resource,
    call_method,
    implements,
)
from connector_cli.sdk.registry import ConnectorRegistry
from connector_cli.sdk.resource_meta import ResourceMeta

if TYPE_CHECKING:
    from connector_cli.connections import ConnectionsSource, Rule
    from connector_cli.connections import Scope as Tenancy
    from connector_cli.sdk.secrets import Connection
    from connector_cli.shield import JobMemory
    from connector_cli.signing import MetaSigner

logger = logging.getLogger(__name__)

UNKNOWN_TASK_TYPE = "unknown"
LARGE_INPUTS = 1 << 20  # inputs of this many bytes or more are converted off the event loop
_NO_SECRETS: Mapping[str, str] = {}


class _Large:
    """Inputs too large to convert on the event loop (see `Dispatcher._convert_large`)."""

    __slots__ = ("inputs", "interface")

    def __init__(self, inputs: Any, interface: Any) -> None:
        self.inputs, self.interface = inputs, interface


class Scope:
    """What one call has learned: its task-type label and the secret values to mask."""

    __slots__ = ("label", "secrets")

    def __init__(self) -> None:
        self.label = UNKNOWN_TASK_TYPE
        self.secrets: Mapping[str, str] = _NO_SECRETS


class Dispatcher:
    """Runs connector operations for request messages against one registry.

    Plain-`def` connector methods run on `executor`; `on_inputs(task_type, size)` is told
    the size of every CreateTask's inputs (the daemon exports it as a metric). `signer`
    signs and verifies the metas of connectors that ask for it; without one, a key made
    for this dispatcher alone is used. `connections` gives daemon-side secrets and
    configs; `memory` (with `on_shielded(task_type)` told of each) answers transient
    `get` failures; GetTask answers over `max_response_bytes` move their outputs to
    outputs.pb.
    """

    def __init__(
        self,
        registry: ConnectorRegistry,
        executor: Optional[Executor] = None,
        on_inputs: Optional[Callable[[str, int], None]] = None,
        signer: Optional[MetaSigner] = None,
        connections: Optional[ConnectionsSource] = None,
        memory: Optional[JobMemory] = None,
        on_shielded: Optional[Callable[[str], None]] = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        sign_foreign: bool = False,
        unsigned_until: Optional[float] = None,
    ) -> None:
        self.registry = registry
        self.executor = executor
        self.on_inputs = on_inputs
        self._signer = signer
        self.connections = connections
        self.memory = memory
        self.on_shielded = on_shielded
        self.max_response_bytes = max_response_bytes
        self.sign_foreign = sign_foreign
        self.unsigned_until = unsigned_until
        self._routes: dict[tuple[str, int], Route] = {}
        self._generation = registry.generation

    @property
    def signer(self) -> MetaSigner:
        """The meta signer given, or one made for this dispatcher at first use (hashlib and
        friends are loaded only when a connector signs)."""
        if self._signer is None:
            from connector_cli.signing import MetaSigner

            self._signer = MetaSigner.ephemeral()
        return self._signer

    def route(self, name: str, version: int, scope: Scope) -> Route:
        """The route for a task type (`ConnectorNotFound` when none serves it); the scope
        takes its label."""
        if self._generation != self.registry.generation:
            self._routes.clear()
            self._generation = self.registry.generation
        route = self._routes.get((name, version))
        if route is None:
            connector = self.registry.get_connector(name, version)
            route = self._routes[(name, version)] = Route(connector, name, version, self.executor,
                                                          self.sign_foreign)
        scope.label = name
        return route

    def _meta(self, route: Route, data: bytes) -> tuple[ResourceMeta, Optional[Rule]]:
        """The request's resource meta (out of its scope envelope, verified first when the
        connector signs it) and the connections rule for the call, if any."""
        rule = None
        if self.connections is not None or data[:5] == b"fcs1.":
            rule, data = self._scoped(route, data)
        if route.signed and not self._unsigned_accepted(route, data):
            data = self.signer.verify(route.name, route.version, data)
        return route.decode(data), rule

    def _unsigned_accepted(self, route: Route, data: bytes) -> bool:
        """True for an unsigned meta of a foreign connector while the migration window of
        `--accept-unsigned-metas-until` is open (tasks started before signing)."""
        until = self.unsigned_until
        if until is None or route.connector.sign_resource_meta or data[:5] == b"fcm1.":
            return False
        import time

        return time.time() < until

    def _scoped(self, route: Route, data: bytes) -> tuple[Optional[Rule], bytes]:
        from connector_cli.connections import unwrap_scope

        tenancy, data = unwrap_scope(self.signer, route.name, route.version, data)
        if self.connections is None:
            return None, data
        return self.connections.lookup(route.name, tenancy), data

    def connection(self, task_type: str, project: Optional[str] = None,
                   domain: Optional[str] = None) -> Optional[Connection]:
        """What the connections file gives a call of `task_type` for `project` and
        `domain` (None when no file or no rule): for the services that have no request
        `connection` of their own (Flyte 1, logs, metrics)."""
        if self.connections is None:
            return None
        return self.connections.connection(task_type, project, domain)

    async def create(self, request: pb.CreateTaskRequest, scope: Scope) -> pb.CreateTaskResponse:
        """CreateTask: routed by the template's type and version."""
        return pb.CreateTaskResponse.FromString(await self.create_wire(request, scope))

    async def create_wire(self, request: pb.CreateTaskRequest, scope: Scope) -> bytes:
        """CreateTask as the daemon answers it: the connector's meta encoded (and signed,
        when the connector asks for it) into the response's wire bytes."""
        template = request.template
        route = self.route(template.type, template.task_type_version, scope)
        if "\0" in request.output_prefix:
            raise UsageError("output_prefix contains a NUL byte; send a path or URI without one")
        rule = tenancy = None
        if self.connections is not None:
            rule, tenancy = self._create_rule(route, request)
        if rule is not None or request.HasField("connection"):
            kwargs = self._kwargs(request, "create", scope, rule)
        else:
            kwargs = {}
        inputs = self._inputs(route, request, template, scope)
        if inputs.__class__ is _Large:
            inputs = await self._convert_large(inputs)
        meta = await route.create(
            task_template=template, output_prefix=request.output_prefix,
            inputs=inputs,
            task_execution_metadata=request.task_execution_metadata
            if request.HasField("task_execution_metadata") else None,
            **kwargs,
        )
        if not isinstance(meta, ResourceMeta):
            raise ContractError(
                f"{route.connector.name}.create returned {type(meta).__name__}; "
                "return a ResourceMeta"
            )
        data = meta.encode()
        if route.signed:
            data = self.signer.sign(route.name, route.version, data)
        if rule is not None and rule.narrowed and tenancy is not None:
            from connector_cli.connections import wrap_scope

            data = wrap_scope(self.signer, route.name, route.version, tenancy, data)
        return wire.create_response(data)

    def _create_rule(self, route: Route,
                     request: pb.CreateTaskRequest) -> tuple[Optional[Rule], Tenancy]:
        from connector_cli.connections import scope_of

        tenancy = scope_of(request.task_execution_metadata
                           if request.HasField("task_execution_metadata") else None)
        assert self.connections is not None
        return self.connections.lookup(route.name, tenancy), tenancy

    def _inputs(self, route: Route, request: pb.CreateTaskRequest, template: Any,
                scope: Scope) -> Any:
        convert = route.convert
        interface = template.interface if template.HasField("interface") else None
        if not request.HasField("inputs"):
            if self.on_inputs is not None:  # 0 bytes, as the Flyte SDK server records it
                self.on_inputs(scope.label, 0)
            return None if convert is None else convert(None, interface)
        inputs = request.inputs
        size = inputs.ByteSize()
        if self.on_inputs is not None:
            self.on_inputs(scope.label, size)
        if convert is None:
            return inputs
        if size >= LARGE_INPUTS:
            return _Large(inputs, interface)
        return convert(inputs, interface)

    async def _convert_large(self, large: _Large) -> Any:
        """Convert large inputs on a thread of their own, one at a time: a conversion costs
        about ten times the inputs' size and would hold the event loop for seconds (one
        thread, so its memory is reused rather than spread over allocator arenas)."""
        from connector_cli.literals import inputs_to_python

        global _large_thread
        if _large_thread is None:
            from concurrent.futures import ThreadPoolExecutor

            _large_thread = ThreadPoolExecutor(1, thread_name_prefix="large-inputs")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_large_thread, inputs_to_python, large.inputs,
                                          large.interface)

    async def get(self, request: pb.GetTaskRequest, scope: Scope) -> pb.GetTaskResponse:
        """GetTask: routed by task category; outputs converted by inference (no template)."""
        return pb.GetTaskResponse.FromString(await self.get_wire(request, scope))

    async def get_wire(self, request: pb.GetTaskRequest, scope: Scope) -> bytes:
        """GetTask as the daemon answers it: the connector's resource as response bytes,
        written directly for the usual plain resource (`connector_cli.wire`), else through
        the message (masked when the request carried secrets)."""
        route = self._start(request, scope)
        meta, rule = self._meta(route, request.resource_meta)
        if rule is not None or request.HasField("connection"):
            call = route.get(resource_meta=meta, **self._kwargs(request, "get", scope, rule))
        else:
            call = route.get(resource_meta=meta)
        memory = self.memory
        try:
            resource = await call
        except Exception as exc:
            if memory is None:
                raise
            resource = self._shielded(memory, route, request, scope, exc)
            memory = None  # a shielded answer is no news about the job
        data = self._answer(route, resource, scope, memory, request.resource_meta)
        if len(data) > self.max_response_bytes:
            data = await fit(data, self.max_response_bytes, request.output_prefix,
                             f"{route.connector.name}.get")
        return data

    def _answer(self, route: Route, resource: Any, scope: Scope, memory: Optional[JobMemory],
                key: bytes) -> bytes:
        """The response bytes for `resource`; the job's phase noted in `memory`."""
        if not scope.secrets:
            data = wire.get_response(resource)
            if data is not None:
                if memory is not None:
                    memory.seen((route.name, route.version, key), resource.phase)
                return data
        response = pb.GetTaskResponse()
        fill_resource(response.resource, resource, f"{route.connector.name}.get")
        masker = current() if scope.secrets else None
        if masker is not None:
            mask_resource(response.resource, masker)
        if memory is not None:
            memory.seen((route.name, route.version, key), response.resource.phase)
        return response.SerializeToString()  # type: ignore[no-any-return]

    def _shielded(self, memory: JobMemory, route: Route, request: pb.GetTaskRequest,
                  scope: Scope, exc: Exception) -> Resource:
        """The last known state instead of a transient failure, or `exc` raised again."""
        answer = memory.shield((route.name, route.version, request.resource_meta), exc)
        if answer is None:
            raise exc
        if self.on_shielded is not None:
            self.on_shielded(scope.label)
        logger.warning("%s.get failed (%s); answering the last known phase",
                       route.connector.name, type(exc).__name__)
        return Resource(phase=answer[0], message=answer[1])

    async def delete(self, request: pb.DeleteTaskRequest, scope: Scope) -> pb.DeleteTaskResponse:
        """DeleteTask: cancel the job; connectors make this idempotent."""
        route = self._start(request, scope)
        meta, rule = self._meta(route, request.resource_meta)
        await route.delete(resource_meta=meta, **self._kwargs(request, "delete", scope, rule))
        return pb.DeleteTaskResponse()

    def _start(self, request: Any, scope: Scope) -> Route:
        category = request.task_category
        return self.route(category.name, category.version, scope)

    @staticmethod
    def _kwargs(request: Any, operation: str, scope: Scope,
                rule: Optional[Rule] = None) -> dict[str, str]:
        kwargs, scope.secrets = connection_kwargs(request, operation, rule)
        return kwargs

    async def get_metrics(
        self, request: pb.GetTaskMetricsRequest, scope: Scope
    ) -> pb.GetTaskMetricsResponse:
        """GetTaskMetrics; NotImplementedError when the connector has no `get_metrics`."""
        connector, meta, extra = self._prepare(request, scope, "get_metrics")
        response = await call_method(
            connector, "get_metrics", executor=self.executor, resource_meta=meta,
            queries=list(request.queries), start_time=request.start_time,
            end_time=request.end_time, step=request.step, **extra,
        )
        if not isinstance(response, pb.GetTaskMetricsResponse):
            raise ContractError(
                f"{connector.name}.get_metrics returned {type(response).__name__}; "
                "return a GetTaskMetricsResponse"
            )
        return response

    async def get_logs(
        self, request: pb.GetTaskLogsRequest, scope: Scope
    ) -> AsyncIterator[pb.GetTaskLogsResponse]:
        """GetTaskLogs: the messages of one response or of a generator of pages."""
        connector, meta, extra = self._prepare(request, scope, "get_logs")
        result = await call_method(
            connector, "get_logs", executor=self.executor, resource_meta=meta,
            token=request.token, lines=request.lines, **extra,
        )
        where = f"{connector.name}.get_logs"
        if inspect.isasyncgen(result):
            try:
                async for page in result:
                    yield log_message(page, where)
            finally:
                await result.aclose()
        elif inspect.isgenerator(result):
            loop, done = asyncio.get_running_loop(), object()
            while (page := await loop.run_in_executor(self.executor, next, result, done)) \
                    is not done:
                yield log_message(page, where)
        elif isinstance(result, (list, tuple)):  # a page: `log_page(...)`
            for page in result:
                yield log_message(page, where)
        else:
            yield log_message(result, where)

    def _prepare(
        self, request: Any, scope: Scope, optional: str
    ) -> tuple[AsyncConnector, ResourceMeta, dict[str, str]]:
        """The connector, the meta, and the connections file's values for a call whose
        request has no connection (those the method accepts)."""
        route = self._start(request, scope)
        connector = route.connector
        if not implements(connector, optional):
            raise NotImplementedError(
                f"connector {connector.name!r} (task type {route.name!r}) does not "
                f"implement {optional}"
            )
        meta, rule = self._meta(route, request.resource_meta)
        extra: dict[str, str] = {}
        if rule is not None:
            from connector_cli.connections import accepted

            extra = accepted(getattr(connector, optional),
                             self._kwargs(request, optional, scope, rule))
        return connector, meta, extra


_large_thread: Optional[Executor] = None
