"""`flyte-connector serve`: run the gRPC daemon (see connector_cli.daemon.server)."""

from __future__ import annotations

import gc
import logging
import os
import sys
from typing import TYPE_CHECKING, Optional

import click

from connector_cli.cli.options import (
    Command,
    discovery_config,
    modules_option,
    option,
    plugins_option,
)
from connector_cli.config import ServerConfig

if TYPE_CHECKING:
    from connector_cli.daemon.server import ConnectorServer
    from connector_cli.discovery import DiscoveryReport
    from connector_cli.sdk.registry import ConnectorRegistry

logger = logging.getLogger("connector_cli.serve")
PORT = click.IntRange(0, 65535)
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULTS = ServerConfig()  # the options' defaults are the config's: one place to change them


class _Processes(click.ParamType):
    """A number of processes of at least 1, or 'auto' (the cores available)."""

    name = "N|auto"

    def convert(self, value: object, param: Optional[click.Parameter],
                ctx: Optional[click.Context]) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text == "auto":
            from connector_cli.daemon.supervisor import available_cores

            return available_cores()
        if text.isdigit() and int(text) >= 1:
            return int(text)
        self.fail(f"{value!r} is not a number of processes (1 or more) or 'auto'", param, ctx)


PROCESSES = _Processes()


@click.command("serve", cls=Command)
@option("--host", default=DEFAULTS.host, show_default=True,
        help="Address to listen on ('::' is every IPv6 and IPv4 address).")
@option("--port", type=PORT, default=DEFAULTS.port, show_default=True,
        help="gRPC port; 0 picks a free one (the log says which).")
@option("--metrics-port", type=PORT, default=DEFAULTS.metrics_port, show_default=True,
        help="Prometheus /metrics port on the same host; 0 disables metrics.")
@option("--workers", type=click.IntRange(min=1), default=DEFAULTS.workers, show_default=True,
        help="Threads that run plain-def connector methods.")
@modules_option
@plugins_option
@option("--grace-period", type=click.FloatRange(min=0), default=DEFAULTS.grace_period,
        show_default=True,
        help="Seconds in-flight requests may take to finish after SIGTERM/SIGINT.")
@option("--tls-cert", metavar="FILE", default=None, help="Server certificate (PEM): serve TLS.")
@option("--tls-key", metavar="FILE", default=None, help="Private key (PEM) of --tls-cert.")
@option("--tls-client-ca", metavar="FILE", default=None,
        help="CA (PEM) that client certificates must be signed by: mutual TLS.")
@option("--max-message-size", type=click.IntRange(min=1024), default=DEFAULTS.max_message_size,
        show_default=True, help="Largest gRPC message accepted or sent, in bytes; larger "
        "requests get RESOURCE_EXHAUSTED.")
@option("--meta-key-file", metavar="FILE", default=None,
        help="Key (at least 32 bytes) that signs the resource_meta of connectors holding "
        "host-local state; every replica that may get a job's calls needs the same one. "
        "Default: a key generated once in --state-dir.")
@option("--previous-meta-key-file", metavar="FILE", default=None,
        help="The key before the current one, still accepted while rotating.")
@option("--state-dir", metavar="DIR", default=None,
        help="The daemon's own state (its generated meta key). "
        "Default: $XDG_STATE_HOME/flyte-connector or ~/.local/state/flyte-connector.")
@option("--max-inflight-bytes", type=click.IntRange(min=1024), default=None,
        help="Bytes that requests of 1 MiB or more may hold at once; beyond it they get "
        "RESOURCE_EXHAUSTED (retry). Default: 4 x --max-message-size.")
@option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="info",
        show_default=True, help="Least severe log level printed.")
@option("--log-format", type=click.Choice(("text", "json")), default="text", show_default=True,
        help="Log lines as text, or as one JSON object per line.")
@option("--strict", is_flag=True, default=False,
        help="Refuse to start when any installed plugin fails to load.")
@option("--processes", type=PROCESSES, default="1", show_default=True,
        help="Worker processes sharing the port (SO_REUSEPORT), supervised by this one; "
        "'auto' = one per available core.")
@option("--worker-state", default=None, hidden=True, envvar=None)
@click.option("--prometheus_port", "prometheus_port", type=PORT, default=None, hidden=True)
@click.option("--worker", "worker", type=click.IntRange(min=1), default=None, hidden=True)
@click.option("--timeout", "timeout", type=click.IntRange(min=0), default=None, hidden=True)
def serve_command(
    host: str, port: int, metrics_port: int, workers: int, modules: tuple[str, ...],
    plugins: tuple[str, ...], grace_period: float, tls_cert: Optional[str],
    tls_key: Optional[str], tls_client_ca: Optional[str], max_message_size: int,
    meta_key_file: Optional[str], previous_meta_key_file: Optional[str],
    state_dir: Optional[str], max_inflight_bytes: Optional[int], log_level: str,
    log_format: str, strict: bool, prometheus_port: Optional[int], worker: Optional[int],
    timeout: Optional[int], processes: int, worker_state: Optional[str],
) -> None:
    """Serve the installed connectors to Flyte over gRPC until SIGTERM/SIGINT.

    Also accepts the Flyte SDK server's (c0) spellings --prometheus_port, --worker and
    --timeout, so a c0 command line works by changing the command name alone.

    Exit status: 0 after a clean shutdown, 1 when the daemon cannot start, 2 for bad
    options or a module that does not exist, 130 when a second SIGINT forced the stop.
    """
    from connector_cli.daemon.logging_setup import configure_logging

    if prometheus_port is not None:
        metrics_port = prometheus_port
    supervising = processes > 1 and not worker_state
    gc.disable()  # start-up only allocates what the daemon keeps: no collections until it serves
    try:
        configure_logging(log_level, log_format)
        config = ServerConfig(
            host=host, port=port, metrics_port=metrics_port or None,
            workers=worker or workers, grace_period=grace_period, tls_cert=tls_cert,
            tls_key=tls_key, tls_client_ca=tls_client_ca, max_message_size=max_message_size,
            meta_key_file=meta_key_file, previous_meta_key_file=previous_meta_key_file,
            state_dir=state_dir, timeout=float(timeout) if timeout is not None else None,
            max_inflight_bytes=max_inflight_bytes, worker_state=worker_state,
        )
        if not supervising:
            server = _server(config, modules, plugins, strict)
            gc.freeze()  # modules and plugins live as long as the daemon: out of GC passes
    finally:
        gc.enable()  # also when start-up fails: an in-process caller keeps its collector
    if supervising:
        from connector_cli.cli.serve_processes import supervise

        supervise(config, processes, click.get_current_context().params)
        return
    from connector_cli.daemon.loop import run

    try:
        code = run(server.serve())
    except KeyboardInterrupt:
        code = 130
    if server.abandoned_threads:
        # Worker threads stuck in connector code would keep the interpreter from exiting.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if code:
        raise click.exceptions.Exit(code)


def _server(config: ServerConfig, modules: tuple[str, ...], plugins: tuple[str, ...],
            strict: bool) -> ConnectorServer:
    """The daemon for `config`, serving what discovery loads (not started yet)."""
    from connector_cli.daemon.server import ConnectorServer
    from connector_cli.sdk.registry import ConnectorRegistry

    registry = ConnectorRegistry()
    return ConnectorServer(registry, config, _load(registry, modules, plugins, strict))


def _load(
    registry: ConnectorRegistry, modules: tuple[str, ...], plugins: tuple[str, ...], strict: bool
) -> DiscoveryReport:
    """Load plugins; a failed --modules entry (or any failure with --strict) stops start-up."""
    from connector_cli.discovery import PluginFailure, load_plugins
    from connector_cli.errors import PluginLoadError

    def warn(failure: PluginFailure) -> None:
        if strict or failure.origin.kind == "module":
            return  # refused below: the Error line says it, once
        logger.warning(
            "plugin %r (%s) failed to load: %s",
            failure.origin.name, failure.origin.describe(), failure.error,
        )

    config = discovery_config(modules, plugins)
    try:
        report = load_plugins(registry, config, refuse="any" if strict else "modules",
                              import_from=os.getcwd(), on_failure=warn)
    except PluginLoadError as exc:
        hint = " (--strict refuses failed plugins)" if strict else ""
        raise PluginLoadError(f"cannot start: {exc}{hint}") from None
    if report.loaded:
        logger.info("loaded %s", ", ".join(o.describe() for o in report.loaded))
    if not len(registry):
        logger.warning("no connectors loaded: install a plugin package or pass --modules")
    return report
