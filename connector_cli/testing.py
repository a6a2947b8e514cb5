"""Helpers for testing connectors against a real daemon.

`serve_in_background` runs the same grpc.aio server `flyte-connector serve` runs, on
127.0.0.1 with an ephemeral port, inside the current event loop, and hands back a client
that talks to it with the generated flyteidl2 stubs (exactly what the Flyte backend does).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any, AsyncIterator, Collection, Optional

if TYPE_CHECKING:
    from connector_cli.client import ClientTLS, ConnectorClient
    from connector_cli.discovery import DiscoveryReport
    from connector_cli.registry import ConnectorRegistry
    from connector_cli.server import ConnectorServer


@dataclasses.dataclass
class RunningDaemon:
    """A daemon started by `serve_in_background`."""

    server: ConnectorServer
    client: ConnectorClient
    registry: ConnectorRegistry
    report: Optional[DiscoveryReport]

    @property
    def port(self) -> int:
        """The bound gRPC port."""
        return self.server.port

    @property
    def address(self) -> str:
        """'127.0.0.1:PORT', ready for a client channel."""
        return self.server.address

    @property
    def metrics_url(self) -> Optional[str]:
        """The Prometheus endpoint URL when metrics are on (pass `metrics_port=0`)."""
        port = self.server.metrics_port
        return f"http://{self.server.config.host}:{port}/metrics" if port else None


@contextlib.asynccontextmanager
async def serve_in_background(
    registry: Optional[ConnectorRegistry] = None,
    *,
    modules: Collection[str] = (),
    plugins: Collection[str] = (),
    client_timeout: float = 10.0,
    client_tls: Optional[ClientTLS] = None,
    **server_options: Any,
) -> AsyncIterator[RunningDaemon]:
    """Run a daemon on 127.0.0.1:0 for the duration of the block.

    Connectors come from `registry` (a fresh one when None) plus `modules` and installed
    `plugins` (entry-point or distribution names; none by default). `server_options` are
    `ServerConfig` fields, e.g. `workers=4` or `metrics_port=0` for ephemeral metrics
    (off by default). Pass `client_tls` when the daemon serves TLS. A module or plugin that fails to load raises `PluginLoadError`.
    """
    from connector_cli.client import ConnectorClient
    from connector_cli.config import ServerConfig
    from connector_cli.registry import ConnectorRegistry
    from connector_cli.server import ConnectorServer

    registry = registry if registry is not None else ConnectorRegistry()
    report = _load(registry, modules, plugins) if modules or plugins else None
    server_options.setdefault("host", "127.0.0.1")
    server_options.setdefault("port", 0)
    server_options.setdefault("metrics_port", None)
    server_options.setdefault("grace_period", 1.0)
    server = ConnectorServer(registry, ServerConfig(**server_options), report)
    await server.start()
    try:
        async with ConnectorClient(server.address, tls=client_tls, timeout=client_timeout) as client:
            yield RunningDaemon(server, client, registry, report)
    finally:
        await server.stop()


def _load(
    registry: ConnectorRegistry, modules: Collection[str], plugins: Collection[str]
) -> DiscoveryReport:
    from connector_cli.discovery import discover
    from connector_cli.errors import PluginLoadError

    report = discover(registry, tuple(modules), tuple(plugins))
    if report.failed:
        raise PluginLoadError("; ".join(f"{f.origin.name}: {f.error}" for f in report.failed))
    return report
