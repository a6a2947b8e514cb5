"""Where `flyte-connector test` runs a connector: in this process, or on a daemon over gRPC.

`InProcessTarget` builds the same request messages a daemon receives and hands them to
the daemon's own `Dispatcher` (`connector_cli.dispatch`), so what works here works served.
`DaemonTarget` sends them to a running daemon with `ConnectorClient`. Both return
`flyteidl2.connector.Resource` messages, so the runner cannot tell them apart.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterable, Optional

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from connector_cli.client import ConnectorClient, check_endpoint
from connector_cli.dispatch import Dispatcher, Scope
from connector_cli.errors import ConnectorNotFound, RemoteError
from connector_cli.run.types import Category, RunRequest, Unsupported
from connector_cli.sdk.registry import not_served_message
from connector_cli.task_requests import (
    create_request,
    delete_request,
    get_request,
    logs_request,
    metrics_request,
)

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from flyteidl2.connector.connector_pb2 import (
        GetTaskLogsRequest,
        GetTaskLogsResponse,
        GetTaskMetricsResponse,
        Resource,
    )

    from connector_cli.client import ClientTLS, ConnectorClient
    from connector_cli.sdk.registry import ConnectorRegistry


class DaemonThreadExecutor(concurrent.futures.Executor):
    """Runs each call on its own daemon thread.

    A plain-`def` connector method that blocks forever must not keep the command from
    exiting after Ctrl-C or `--timeout`; `ThreadPoolExecutor` joins its threads at exit.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
                future.set_exception(exc)

        threading.Thread(target=work, name="connector-call", daemon=True).start()
        return future


class _MessageTarget:
    """The `RunTarget` calls, built once as the request messages a daemon receives; a
    subclass only says how a message reaches the connector and what 'not implemented'
    looks like on its side."""

    description = ""
    connector_name = ""

    async def _unary(self, operation: str, message: Any) -> Any:
        """Send a request of a unary `operation` (create, get, delete, get_metrics); the
        response."""
        raise NotImplementedError

    def _pages(self, message: GetTaskLogsRequest) -> AsyncIterator[GetTaskLogsResponse]:
        """Send a GetTaskLogs request; yield the response messages."""
        raise NotImplementedError

    def _unimplemented(self, exc: Exception) -> bool:
        """True when `exc` says the connector does not implement the method."""
        raise NotImplementedError

    async def create(self, request: RunRequest) -> bytes:
        message = create_request(request.template, request.output_prefix, request.inputs,
                                 request.task_execution_metadata, request.connection_proto())
        return bytes((await self._unary("create", message)).resource_meta)

    async def get(self, request: RunRequest, resource_meta: bytes) -> Resource:
        message = get_request(request.category, resource_meta, request.output_prefix,
                              request.connection_proto())
        return (await self._unary("get", message)).resource

    async def delete(self, request: RunRequest, resource_meta: bytes) -> None:
        message = delete_request(request.category, resource_meta, request.connection_proto())
        await self._unary("delete", message)

    async def log_page(self, request: RunRequest, resource_meta: bytes,
                       token: str) -> tuple[list[str], str]:
        message = logs_request(request.category, resource_meta, token=token)
        try:
            return page_of([m async for m in self._pages(message)])
        except Exception as exc:
            if self._unimplemented(exc):
                raise Unsupported("get_logs") from None
            raise

    async def metrics(self, request: RunRequest, resource_meta: bytes, start: float,
                      end: float) -> GetTaskMetricsResponse:
        message = metrics_request(request.category, resource_meta, **metrics_window(start, end))
        try:
            response: GetTaskMetricsResponse = await self._unary("get_metrics", message)
        except Exception as exc:
            if self._unimplemented(exc):
                raise Unsupported("get_metrics") from None
            raise
        return response


class InProcessTarget(_MessageTarget):
    """Runs the connector registered for the template's task type in this process, through
    the daemon's own `Dispatcher` on the same request messages a daemon would receive."""

    def __init__(self, registry: ConnectorRegistry,
                 executor: Optional[concurrent.futures.Executor] = None,
                 plugin_failures: Iterable[str] = ()) -> None:
        self.registry = registry
        self.dispatch = Dispatcher(registry, executor or DaemonThreadExecutor())
        self.plugin_failures = list(plugin_failures)
        self.description = "in-process"

    async def check(self, category: Category) -> None:
        try:
            connector = self.registry.get_connector(*category)
        except ConnectorNotFound as exc:
            if not self.plugin_failures:
                raise
            raise ConnectorNotFound(f"{exc}; plugins that failed to load: "
                                    f"{'; '.join(self.plugin_failures)}") from None
        self.connector_name = type(connector).__name__
        logger.debug("running %r in-process", connector)

    async def _unary(self, operation: str, message: Any) -> Any:
        return await getattr(self.dispatch, operation)(message, Scope())

    def _pages(self, message: GetTaskLogsRequest) -> AsyncIterator[GetTaskLogsResponse]:
        return self.dispatch.get_logs(message, Scope())

    def _unimplemented(self, exc: Exception) -> bool:
        return isinstance(exc, NotImplementedError)

    async def close(self) -> None:
        """Nothing to release: worker threads are daemons and end with their calls."""


class DaemonTarget(_MessageTarget):
    """Sends the same requests to a running daemon at `endpoint`.

    Pass `client` to reuse one that is already open (the test kit's daemon): it stays
    open when the target closes, since it belongs to its owner.
    """

    def __init__(self, endpoint: str, tls: Optional[ClientTLS] = None,
                 timeout: float = 10.0, client: Optional[ConnectorClient] = None) -> None:
        check_endpoint(endpoint)
        if tls is not None:
            tls.credentials()  # reads the files now, so a bad path is a usage error up front
        self.endpoint, self.tls, self.timeout = endpoint, tls, timeout
        self._client: Optional[ConnectorClient] = client
        self._owns_client = client is None
        self.description = f"daemon at {endpoint}"

    @property
    def client(self) -> ConnectorClient:
        """The client, made on first use: its channel belongs to the running loop."""
        if self._client is None:
            self._client = ConnectorClient(self.endpoint, tls=self.tls, timeout=self.timeout)
        return self._client

    async def check(self, category: Category) -> None:
        listed = await self.client.list_connectors()
        served = [(c.name, c.version) for connector in listed
                  for c in connector.supported_task_categories]
        names = [connector.name for connector in listed
                 for c in connector.supported_task_categories
                 if (c.name, c.version) == tuple(category)]
        self.connector_name = names[0] if names else ""
        if tuple(category) not in served:
            raise ConnectorNotFound(
                not_served_message(category, served, f"the daemon at {self.endpoint}"))

    async def _unary(self, operation: str, message: Any) -> Any:
        return await self.client.call(operation, message)

    def _pages(self, message: GetTaskLogsRequest) -> AsyncIterator[GetTaskLogsResponse]:
        return self.client.stream_logs(message)

    def _unimplemented(self, exc: Exception) -> bool:
        return isinstance(exc, RemoteError) and exc.code == "UNIMPLEMENTED"

    async def close(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.close()


def metrics_window(start: float, end: float) -> dict[str, Any]:
    """GetTaskMetrics fields for the run's wall-clock window, one point per second."""
    start_ts, end_ts = Timestamp(), Timestamp()
    start_ts.FromNanoseconds(int(start * 1e9))
    end_ts.FromNanoseconds(int(end * 1e9))
    return {"queries": [], "start_time": start_ts, "end_time": end_ts,
            "step": Duration(seconds=1)}


def page_of(messages: Iterable[GetTaskLogsResponse]) -> tuple[list[str], str]:
    """Log lines of one GetTaskLogs answer and the next page's token ('' when last).

    The messages are already whole responses: the dispatcher (in-process) and the daemon
    normalise a connector's pages the one way (`connector_cli.dispatch`)."""
    lines: list[str] = []
    token = ""
    for message in messages:
        if message.HasField("header"):
            token = message.header.token
        elif message.HasField("body"):
            lines.extend(_body_lines(message))
    return lines, token


def _body_lines(message: GetTaskLogsResponse) -> list[str]:
    body = message.body
    if not body.lines:
        return list(body.results)
    out = []
    for line in body.lines:
        if line.HasField("timestamp"):
            when = line.timestamp.ToDatetime().isoformat(timespec="seconds")
            out.append(f"{when} {line.message}")
        else:
            out.append(line.message)
    return out
