"""A thin client over the flyteidl2 generated stubs, for `list --endpoint` and `test --endpoint`.

It speaks to a connector daemon exactly as the Flyte backend does (same services, same
messages, a deadline on every call) and turns gRPC errors into this package's error
types, so the CLI prints one line whichever side failed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping, Optional

import grpc
import grpc.aio

from connector_cli.errors import (
    TRANSIENT_MARK,
    ConnectorNotFound,
    RemoteError,
    UsageError,
)
from connector_cli.sdk.registry import Category
from connector_cli.task_requests import (
    OPERATIONS,
    create_request,
    delete_request,
    get_request,
    logs_request,
    metrics_request,
)

if TYPE_CHECKING:
    from flyteidl2.connector.connector_pb2 import (
        Connector,
        GetTaskLogsRequest,
        GetTaskLogsResponse,
        GetTaskMetricsResponse,
        Resource,
        TaskExecutionMetadata,
    )
    from flyteidl2.core.tasks_pb2 import TaskTemplate
    from flyteidl2.task.common_pb2 import Inputs

DEFAULT_TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True)
class ClientTLS:
    """TLS for a client channel: verify the daemon against `ca_cert` (PEM file; None uses
    the system roots) and, for mTLS, present `cert`/`key`."""

    ca_cert: Optional[str] = None
    cert: Optional[str] = None
    key: Optional[str] = None

    def credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials; a missing or unreadable file is a `UsageError`."""
        if bool(self.cert) != bool(self.key):
            raise UsageError("a TLS client certificate needs both --tls-cert and --tls-key")
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_cert, "CA certificate"),
            private_key=_read(self.key, "TLS key"),
            certificate_chain=_read(self.cert, "TLS certificate"),
        )


def _read(path: Optional[str], what: str) -> Optional[bytes]:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the {what} {path!r}: {exc.strerror}") from None


def endpoint_problem(endpoint: str) -> Optional[str]:
    """Why `endpoint` is not a HOST:PORT gRPC target, or None when it is one."""
    scheme, sep, rest = endpoint.partition("://")
    if sep:
        host_port = rest.rstrip("/") or "localhost:8000"
        example = host_port if ":" in host_port else f"{host_port}:PORT"
        return (f"{endpoint!r} has a URL scheme; drop '{scheme}://' and give HOST:PORT, "
                f"e.g. {example}")
    if not endpoint or ":" not in endpoint:
        return f"{endpoint!r} is not HOST:PORT (e.g. localhost:8000)"
    return None


def check_endpoint(endpoint: str) -> None:
    """Refuse an endpoint that is not HOST:PORT with a `UsageError` saying why."""
    problem = endpoint_problem(endpoint)
    if problem is not None:
        raise UsageError(f"endpoint {problem}")


def open_channel(
    endpoint: str, tls: Optional[ClientTLS] = None, max_message_size: int = 64 * 1024 * 1024
) -> grpc.aio.Channel:
    """An aio channel to `endpoint` (HOST:PORT), plaintext h2c unless `tls` is given."""
    check_endpoint(endpoint)
    options = [
        ("grpc.max_receive_message_length", max_message_size),
        ("grpc.max_send_message_length", max_message_size),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
    ]
    if tls is None:
        return grpc.aio.insecure_channel(endpoint, options=options)
    return grpc.aio.secure_channel(endpoint, tls.credentials(), options=options)


def connection(
    secrets: Optional[Mapping[str, str]] = None, configs: Optional[Mapping[str, str]] = None
) -> Any:
    """A `flyteidl2.core.Connection` carrying resolved secrets and configs."""
    from flyteidl2.core.security_pb2 import Connection

    return Connection(secrets=dict(secrets or {}), configs=dict(configs or {}))


class ConnectorClient:
    """Calls one daemon's AsyncConnectorService and ConnectorMetadataService.

    Use as `async with ConnectorClient("localhost:8000") as client: ...`. Every call has a
    deadline of `timeout` seconds (the backend's default is 10 s).
    """

    def __init__(
        self, endpoint: str, tls: Optional[ClientTLS] = None, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        from flyteidl2.connector.service_pb2_grpc import (
            AsyncConnectorServiceStub,
            ConnectorMetadataServiceStub,
        )

        self.endpoint = endpoint
        self.timeout = timeout
        self.tls = tls is not None
        self.channel = open_channel(endpoint, tls)
        self._tasks = AsyncConnectorServiceStub(self.channel)
        self._metadata = ConnectorMetadataServiceStub(self.channel)

    async def __aenter__(self) -> ConnectorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()

    async def list_connectors(self) -> list[Connector]:
        """ListConnectors: every connector the daemon serves."""
        from flyteidl2.connector.connector_pb2 import ListConnectorsRequest

        response = await self._call(self._metadata.ListConnectors, ListConnectorsRequest())
        return list(response.connectors)

    async def get_connector(self, name: str) -> Connector:
        """GetConnector: one connector's metadata by name."""
        from flyteidl2.connector.connector_pb2 import GetConnectorRequest

        response = await self._call(self._metadata.GetConnector, GetConnectorRequest(name=name))
        return response.connector

    async def create(
        self,
        template: TaskTemplate,
        output_prefix: str,
        inputs: Optional[Inputs] = None,
        task_execution_metadata: Optional[TaskExecutionMetadata] = None,
        connection: Any = None,
    ) -> bytes:
        """CreateTask; returns the `resource_meta` bytes to pass to later calls."""
        request = create_request(template, output_prefix, inputs, task_execution_metadata,
                                 connection)
        return bytes((await self.call("create", request)).resource_meta)

    async def get(
        self,
        task_category: Category,
        resource_meta: bytes,
        output_prefix: str = "",
        connection: Any = None,
    ) -> Resource:
        """GetTask; returns the `flyteidl2.connector.Resource` (phase, message, outputs...)."""
        request = get_request(task_category, resource_meta, output_prefix, connection)
        return (await self.call("get", request)).resource

    async def delete(
        self, task_category: Category, resource_meta: bytes, connection: Any = None
    ) -> None:
        """DeleteTask."""
        await self.call("delete", delete_request(task_category, resource_meta, connection))

    async def get_metrics(
        self, task_category: Category, resource_meta: bytes, **fields: Any
    ) -> GetTaskMetricsResponse:
        """GetTaskMetrics; `fields` are `queries`, `start_time`, `end_time`, `step`."""
        request = metrics_request(task_category, resource_meta, **fields)
        return await self.call("get_metrics", request)  # type: ignore[no-any-return]

    async def get_logs(
        self, task_category: Category, resource_meta: bytes, lines: int = 0, token: str = ""
    ) -> AsyncIterator[GetTaskLogsResponse]:
        """GetTaskLogs: the daemon's stream of header (next-page token) and body messages."""
        async for message in self.stream_logs(
                logs_request(task_category, resource_meta, lines, token)):
            yield message

    async def call(self, operation: str, request: Any) -> Any:
        """Send a ready request message of a unary `operation` ('create', 'get', 'delete'
        or 'get_metrics', see `connector_cli.task_requests`); the response message."""
        return await self._call(getattr(self._tasks, OPERATIONS[operation]), request)

    async def stream_logs(
        self, request: GetTaskLogsRequest
    ) -> AsyncIterator[GetTaskLogsResponse]:
        """Send a ready GetTaskLogs request; yield the daemon's header and body messages."""
        call = self._tasks.GetTaskLogs(request, timeout=self.timeout)
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc) from None

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc) from None

    def _error(self, exc: grpc.aio.AioRpcError) -> Exception:
        return remote_error(exc, self.endpoint, self.tls)


def remote_error(exc: grpc.aio.AioRpcError, endpoint: str, tls: bool = False) -> Exception:
    """Turn a failed call into this package's error type with one readable line."""
    code = exc.code()
    details = exc.details() or code.name
    if code == grpc.StatusCode.NOT_FOUND:
        return ConnectorNotFound(details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return UsageError(details)
    if code == grpc.StatusCode.UNAVAILABLE and TRANSIENT_MARK in details:
        # The daemon answered: a connector's service failed for now, not the daemon.
        return RemoteError(f"{code.name}: {details}", code.name)
    if code == grpc.StatusCode.UNAVAILABLE or "failed to connect to all addresses" in details:
        reason = unreachable_reason(details, tls)
        return RemoteError(f"cannot reach the connector daemon at {endpoint}: {reason}",
                           "UNAVAILABLE")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return RemoteError(f"the connector daemon at {endpoint} did not answer in time", code.name)
    return RemoteError(f"{code.name}: {details}", code.name)


def unreachable_reason(details: str, tls: bool) -> str:
    """gRPC's "failed to connect to all addresses; last error: ..." as the likely cause and
    what to do about it."""
    import re

    last = re.split(r"last error: \w+: (?:ipv[46]:\S+?: |unix:\S+?: )?", details)[-1].strip()
    lowered = last.lower()
    if "connection refused" in lowered:
        return "connection refused: is `flyte-connector serve` running there?"
    if "certificate_verify_failed" in lowered:
        return ("the daemon's TLS certificate is not trusted "
                f"({last.split('CERTIFICATE_VERIFY_FAILED: ')[-1].removesuffix(': OK')}); "
                "pass its CA with --tls-ca FILE")
    if "wrong_version_number" in lowered or ("handshake" in lowered and tls):
        return ("the TLS handshake failed: the daemon may serve plaintext "
                "(drop --tls and the --tls-* options)")
    if "socket closed" in lowered and not tls:
        return "the daemon closed the connection: if it serves TLS, add --tls (or --tls-ca FILE)"
    if "deadline" in lowered or "timeout" in lowered:
        return f"no answer ({last}); is the address right and the port open?"
    return last or details
