"""The daemon's lifecycle: bind (real port) -> start -> SERVING -> signal -> drain -> close.

`ConnectorServer` runs the two connector services plus gRPC health and reflection on one
grpc.aio server, plain-`def` connector methods on its own thread pool, and (optionally) a
Prometheus endpoint. `serve()` adds uvicorn-like signal handling: the first SIGINT/SIGTERM
sets health to NOT_SERVING and drains in-flight requests for the grace period; a second
SIGINT stops at once, a repeated SIGTERM does not (the policy of
`connector_cli.shutdown`). Start-up failures raise
`StartupError` with one readable line.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Optional

import grpc
import grpc.aio

from connector_cli.config import ServerConfig
from connector_cli.daemon.addresses import bind_error, check_free, host_port
from connector_cli.daemon.bodies import BodyGate
from connector_cli.daemon.gate import RequestGate
from connector_cli.daemon.health import SERVICE as HEALTH_SERVICE
from connector_cli.daemon.health import SERVING
from connector_cli.daemon.limits import (
    HANDSHAKE_MS,
    IDLE_MS,
    body_slots,
    connection_limit,
    raise_fd_limit,
    refuse_host_local,
)
from connector_cli.daemon.loop import loop_name
from connector_cli.daemon.raw_handlers import add_raw_service
from connector_cli.daemon.servicers import MetadataService, TaskService
from connector_cli.daemon.servicers_v1 import api_label, served_apis, service_names_for
from connector_cli.errors import StartupError
from connector_cli.sdk.registry import ConnectorRegistry

if TYPE_CHECKING:
    from connector_cli.discovery import DiscoveryReport
    from connector_cli.signing import MetaSigner

logger = logging.getLogger(__name__)

DELETE_DRAIN = 10.0  # seconds accepted deletes may run past the grace period
_server_ids = itertools.count(1)


def grpc_options(config: ServerConfig) -> list[tuple[str, Any]]:
    """Channel options: message sizes, an exclusive port (shared only by the workers of
    `serve --processes`), and keepalive that accepts the backend's 30 s client pings (even
    between calls) and drops dead peers."""
    return [
        ("grpc.so_reuseport", 1 if config.worker_state else 0),
        ("grpc.max_receive_message_length", config.max_message_size),
        ("grpc.max_send_message_length", config.max_message_size),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        # A stream's window grows only while its body is being read (see daemon.bodies):
        # BDP probing would raise every stream's initial window to megabytes.
        ("grpc.http2.bdp_probe", 0),
        # Connections: bounded below the file descriptor limit (jobs and files need the
        # rest), closed when they never finish the HTTP/2 handshake or sit idle.
        ("grpc.max_allowed_incoming_connections", connection_limit()),
        ("grpc.server_handshake_timeout_ms", HANDSHAKE_MS),
        ("grpc.max_connection_idle_ms", IDLE_MS),
    ]


def plural(count: int, noun: str) -> str:
    """'1 task type', '2 task types'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def process_started() -> Optional[float]:
    """When this process started, as a `time.monotonic()` instant (Linux: /proc), or None.

    /proc/self/stat gives the start in clock ticks since boot (CLOCK_BOOTTIME), so the
    process's age includes interpreter start-up and every import before ours."""
    import os

    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf(
            "SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return time.monotonic() - max(age, 0.0)


class ConnectorServer:
    """One daemon: connector services, health, reflection and metrics over `registry`.

    `signer` (a `connector_cli.signing.MetaSigner`) replaces the one the config's key
    options describe, e.g. an ephemeral one in tests. `launched` is the `time.monotonic()`
    instant start-up began (the CLI passes the process's start, `process_started()`), so
    the "ready in" figure covers imports and plugin loading, not only the bind."""

    def __init__(
        self,
        registry: ConnectorRegistry,
        config: Optional[ServerConfig] = None,
        plugin_report: Optional[DiscoveryReport] = None,
        signer: Optional[MetaSigner] = None,
        launched: Optional[float] = None,
    ) -> None:
        self.registry = registry
        self.launched = launched
        self.signer = signer
        self.config = config or ServerConfig()
        self.plugin_report = plugin_report
        self.port = 0
        self.metrics_port: Optional[int] = None
        self.abandoned_threads = 0
        self._thread_prefix = f"connector-{next(_server_ids)}"
        self._server: Optional[grpc.aio.Server] = None
        self._executor: Optional[ThreadPoolExecutor] = None
        self._metrics: Any = None
        self._health: Any = None
        self._services: tuple[TaskService, MetadataService] | None = None
        self.gate: Optional[RequestGate] = None
        self.bodies: Optional[BodyGate] = None
        self._stopped: Optional[asyncio.Event] = None
        self._stopping = False
        self._link: Any = None
        self._endpoint: Any = None
        self.apis: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        """Where the daemon listens, e.g. '127.0.0.1:50051' or '[::]:8000'."""
        return host_port(self.config.host, self.port)

    @property
    def in_flight(self) -> int:
        """Requests being answered now."""
        return sum(s.in_flight for s in self._services or ())

    async def start(self) -> None:
        """Bind, start and report SERVING, then start metrics; `StartupError` when it cannot.

        The /metrics port is bound last; prometheus_client is imported by the first scrape
        (see `metrics_http`), so it never delays the first ListConnectors answer."""
        started = time.monotonic() if self.launched is None else self.launched
        config = self.config
        self.apis = served_apis(config.api)
        if config.worker_state:
            refuse_host_local(self.registry)
        signer = self.signer or self._signer()
        self._executor = ThreadPoolExecutor(config.workers, thread_name_prefix=self._thread_prefix)
        self._metrics = self._make_metrics()
        # before the grpc server exists: a bad connections file stops start-up cleanly
        tasks = TaskService(self.registry, self._executor, self._metrics, signer, config)
        raise_fd_limit()
        self.gate = RequestGate(config.inflight_budget, body_slots(config))
        self.bodies = self.gate.bodies
        server = grpc.aio.server(options=grpc_options(config))
        metadata = MetadataService(self.registry, self._executor, self._metrics)
        self._services = (tasks, metadata)
        self._health = _add_services(server, tasks, metadata, self.gate, tasks.draining,
                                     self.apis)
        try:
            if config.metrics_port:
                check_free(config.host, config.metrics_port, "metrics")
            self.port = self._bind(server)
        except StartupError:
            self._executor.shutdown(wait=False)
            await server.stop(None)
            raise
        self._server = server
        self._stopped = asyncio.Event()
        await server.start()
        for name in ("", *service_names_for(self.apis), HEALTH_SERVICE):
            await self._health.set(name, SERVING)
        if config.worker_state:
            from connector_cli.daemon.worker_link import WorkerLink

            self._link = WorkerLink(config.worker_state, self._metrics)
        logger.info(
            "flyte-connector listening on %s (%s, %s, %s) ready in %.2fs on %s; %s",
            self.address, "TLS" if config.tls else "plaintext",
            plural(len(self.registry), "task type"), plural(config.workers, "worker"),
            time.monotonic() - started, loop_name(), api_label(self.apis),
        )
        if self._metrics is not None and self._link is None:
            try:
                self.metrics_port = await self._serve_metrics()
            except StartupError:
                await self.stop(0)
                raise
            logger.info("metrics on http://%s/metrics", host_port(config.host, self.metrics_port))

    def _signer(self) -> Any:
        """The resource meta signer from the key options; `StartupError` when a key file is
        unusable. Without a key file and with no signing connector, none is needed."""
        config = self.config
        needed = bool(config.connections or config.sign_foreign_metas) or any(
            r.connector.sign_resource_meta for r in self.registry.registrations())
        if not (needed or config.meta_key_file or config.previous_meta_key_file):
            return None
        from connector_cli.signing import load_signer

        return load_signer(config.meta_key_file, config.previous_meta_key_file, needed,
                           config.state_dir)

    def _make_metrics(self) -> Any:
        if self.config.metrics_port is None and not self.config.worker_state:
            return None
        from connector_cli.daemon.metrics import Metrics

        metrics = Metrics()
        report = self.plugin_report
        if report is not None:
            failed = [(f.origin.name, f.reason) for f in report.failed]
            metrics.plugins(report.modules_loaded, failed)
        return metrics

    def _bind(self, server: grpc.aio.Server) -> int:
        target = host_port(self.config.host, self.config.port)
        if self.config.port and not self.config.worker_state:
            check_free(self.config.host, self.config.port)
        try:
            if self.config.tls:
                from connector_cli.daemon.tls import server_credentials  # ssl: TLS only

                return server.add_secure_port(target, server_credentials(self.config))
            return server.add_insecure_port(target)
        except RuntimeError:
            raise bind_error("grpc", self.config.host, self.config.port,
                             "the port is in use or the address is not available here") from None

    async def _serve_metrics(self) -> int:
        from connector_cli.daemon.metrics_http import MetricsEndpoint

        assert self.config.metrics_port is not None
        self._endpoint = MetricsEndpoint(self._metrics)
        try:
            return await self._endpoint.start(self.config.host, self.config.metrics_port)
        except OSError as exc:
            raise bind_error("metrics", self.config.host, self.config.metrics_port,
                             exc.strerror or str(exc)) from None

    async def stop(self, grace: Optional[float] = None) -> None:
        """NOT_SERVING, refuse new RPCs, give in-flight ones `grace` seconds, then close."""
        if self._server is None or self._stopped is None:
            return
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        grace = self.config.grace_period if grace is None else grace
        await self._health.enter_graceful_shutdown()
        if self.bodies is not None:
            self.bodies.open_all()
        if self._services is not None:
            self._services[0].draining.set()  # open streams end now; unary calls finish
        pending, cancelled = self.in_flight, self._cancelled()
        if pending:
            logger.info("draining %s (up to %gs)", plural(pending, "in-flight request"), grace)
        await self._server.stop(grace)
        await self._finish_deletes()
        await self._cancel_leftovers()
        if self._endpoint is not None:
            await self._endpoint.close()
        cancelled = self._cancelled() - cancelled
        if cancelled:
            logger.warning("cancelled %d requests that did not finish within %gs", cancelled,
                           grace)
        self._close_pools()
        if self._link is not None:
            self._link.close()
        self._stopped.set()
        logger.info("flyte-connector on %s stopped", self.address)

    async def _finish_deletes(self) -> None:
        """Give deletes accepted before the shutdown up to `DELETE_DRAIN` more seconds:
        a job's kill grace may be longer than the daemon's, and an abandoned delete would
        leave the job's processes running after the daemon exits."""
        deletes = list(self._services[0].deletes) if self._services else []
        if not deletes:
            return
        logger.info("waiting up to %gs for %d accepted deletes", DELETE_DRAIN, len(deletes))
        _, pending = await asyncio.wait(deletes, timeout=DELETE_DRAIN)
        if pending:
            logger.warning("%d deletes did not finish within %gs more", len(pending),
                           DELETE_DRAIN)

    async def _cancel_leftovers(self) -> None:
        """Cancel handlers still running after `server.stop(grace)`: grpc ends their RPCs
        but does not always cancel the coroutines, which would keep connector code going."""
        leftover = [t for s in self._services or () for t in s.tasks if not t.done()]
        for task in leftover:
            task.cancel()
        if leftover:
            await asyncio.wait(leftover, timeout=1.0)

    def _cancelled(self) -> int:
        return sum(s.cancelled for s in self._services or ())

    def _close_pools(self) -> None:
        assert self._executor is not None
        self._executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + 0.2
        busy = 0
        for thread in threading.enumerate():
            if thread.name.startswith(self._thread_prefix + "_"):
                thread.join(max(0.0, deadline - time.monotonic()))
                busy += thread.is_alive()
        self.abandoned_threads = busy
        if busy:
            logger.warning("%d connector threads are still running; not waiting for them", busy)

    async def serve(self) -> int:
        """Start, run until a stop signal (or `timeout`), drain; the exit status: 0, or
        128 + the signal that forced the stop (see `connector_cli.shutdown`).

        Signal handlers go in before `start`, so a signal right after the ready line is
        never lost to the default handler."""
        from connector_cli.shutdown import StopSignals

        stop = StopSignals(
            on_request=lambda reason: logger.info(
                "%s: shutting down (SIGINT again stops at once)", reason),
            on_force=lambda name: logger.warning("received %s again: stopping now", name),
            on_repeat=lambda name: logger.info(
                "received %s again: still draining (SIGINT stops at once)", name),
        )
        async with stop:
            await self.start()
            if self._link is not None:
                self._link.watch_parent(lambda: stop.request("the supervising process is gone"))
            try:
                await asyncio.wait_for(stop.requested.wait(), self.config.timeout)
            except asyncio.TimeoutError:
                stop.request(f"timeout of {self.config.timeout:g}s reached")
            drain = asyncio.ensure_future(self.stop())
            forced = asyncio.ensure_future(stop.forced.wait())
            await asyncio.wait({drain, forced}, return_when=asyncio.FIRST_COMPLETED)
            if drain.done():
                forced.cancel()
                drain.result()
                return 0
            drain.cancel()
            self.abandoned_threads = max(self.abandoned_threads, 1)
            return stop.exit_code


def _add_services(
    server: grpc.aio.Server, tasks: TaskService, metadata: MetadataService, gate: RequestGate,
    draining: asyncio.Event, apis: tuple[str, ...] = ("v2",),
) -> Any:
    """Register connector services, health and reflection; returns the health service.

    The connector and health services take raw bytes and parse them through `gate`, so a
    garbage body is INVALID_ARGUMENT (grpc's own deserializer would make it UNKNOWN).
    Health and reflection are built by their first call (see `daemon.health`)."""
    from flyteidl2.connector import service_pb2

    from connector_cli.daemon.health import SERVICE as HEALTH
    from connector_cli.daemon.health import LazyHealth
    from connector_cli.daemon.reflection import SERVICE as REFLECTION
    from connector_cli.daemon.reflection import lazy_reflection

    if "v2" in apis:
        services = service_pb2.DESCRIPTOR.services_by_name
        add_raw_service(server, services["AsyncConnectorService"], tasks, gate)
        add_raw_service(server, services["ConnectorMetadataService"], metadata, gate)
    modules: tuple[str, ...] = ()
    if "v1" in apis:
        from connector_cli.daemon.servicers_v1 import DESCRIPTOR_MODULE, v1_handlers

        server.add_generic_rpc_handlers(v1_handlers(tasks, metadata, gate))
        modules = (DESCRIPTOR_MODULE,)
    health = LazyHealth(gate)
    reflection = lazy_reflection((*service_names_for(apis), HEALTH, REFLECTION), draining,
                                 gate.bodies, modules)
    server.add_generic_rpc_handlers((health, reflection))
    return health
