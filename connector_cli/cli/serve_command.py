"""`flyte-connector serve`: run the gRPC daemon (see connector_cli.daemon.server).

The options are made from `ServerConfig`'s fields (`connector_cli.config.options`): a new
option is one field there, and reaches the command line, the `--processes` workers and
the CLI reference from it.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional

import click

from connector_cli.cli.options import (
    Command,
    discovery_config,
    envvar_for,
    modules_option,
    plugins_option,
)
from connector_cli.config import DiscoveryConfig, ServerConfig, options

if TYPE_CHECKING:
    from connector_cli.daemon.server import ConnectorServer
    from connector_cli.discovery import DiscoveryReport
    from connector_cli.sdk.registry import ConnectorRegistry

logger = logging.getLogger("connector_cli.serve")
PORT = click.IntRange(0, 65535)


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


class _Apis(click.ParamType):
    """'v1,v2' (commas or spaces) -> ('v1', 'v2'): the API generations to serve."""

    name = "v1,v2"

    def convert(self, value: object, param: Optional[click.Parameter],
                ctx: Optional[click.Context]) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        names = tuple(sorted({v.lower() for v in str(value).replace(",", " ").split()}))
        if not names or set(names) - {"v1", "v2"}:
            self.fail(f"{value!r}: name v1, v2 or both (v1,v2)", param, ctx)
        return names


_TYPES: dict[str, dict[str, Any]] = {
    "text": {},
    "port": {"type": PORT},
    "port-or-off": {"type": PORT},
    "count": {"type": click.IntRange(min=1)},
    "seconds": {"type": click.FloatRange(min=0)},
    "bytes": {"type": click.IntRange(min=1024)},
    "file": {"metavar": "FILE"},
    "dir": {"metavar": "DIR"},
    "time": {"metavar": "TIME"},
    "flag": {"is_flag": True},
    "processes": {"type": _Processes()},
    "apis": {"type": _Apis()},
}


def _click_attrs(kind: Any) -> dict[str, Any]:
    if isinstance(kind, tuple):
        return {"type": click.Choice(kind, case_sensitive=False)}
    return dict(_TYPES[kind])


def server_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Every `ServerConfig` option, and its c0 spelling as a hidden alias."""
    for name, default, spec in reversed(options()):
        long = "--" + name.replace("_", "-")
        fn = click.option(
            long, name, default=default, help=spec.help or None, hidden=spec.hidden,
            show_default=default is not None and not spec.hidden and spec.kind != "flag",
            envvar=envvar_for(long) if spec.env else None, show_envvar=spec.env,
            **_click_attrs(spec.kind),
        )(fn)
        if spec.c0:
            fn = click.option(spec.c0, "c0_" + name, default=None, hidden=True,
                              **_click_attrs(spec.kind))(fn)
    return fn


def config_from_params(params: dict[str, Any]) -> tuple[ServerConfig, DiscoveryConfig]:
    """The config the parsed options describe (a c0 alias, when given, wins)."""
    values: dict[str, Any] = {}
    for name, _default, spec in options():
        value = params[name]
        if spec.kind == "port-or-off" and value == 0:
            value = None
        alias = params.get("c0_" + name)
        values[name] = value if alias is None else alias
    config = ServerConfig(**values)
    return config, discovery_config(params["modules"], params["plugins"])


@click.command("serve", cls=Command)
@modules_option
@plugins_option
@server_options
@click.argument("pyflyte_server", metavar="[connector]", required=False,
                type=click.Choice(("connector", "agent")))
def serve_command(**params: Any) -> None:
    """Serve the installed connectors to Flyte over gRPC until SIGTERM/SIGINT.

    Also accepts the spellings --prometheus_port, --worker and --timeout of the Flyte SDK's
    server (c0) and of flytekit's (`pyflyte serve connector`, whose `connector` word is
    taken too), so either command line works by changing the command name alone.

    Exit status: 0 after a clean shutdown, 1 when the daemon cannot start, 2 for bad
    options or a module that does not exist, 130 when a second SIGINT forced the stop.
    """
    from connector_cli.daemon import init
    from connector_cli.daemon.logging_setup import configure_logging, host_library_loggers

    if init.needed():
        init.run_as_init()  # only the daemon (a child) returns; PID 1 reaps orphans
    gc.disable()  # start-up only allocates what the daemon keeps: no collections until it serves
    try:
        config, discovery = config_from_params(params)
        configure_logging(config.log_level, config.log_format)
        supervising = config.processes > 1 and not config.worker_state
        if not supervising:
            server = _server(config, discovery)
            host_library_loggers()
            gc.freeze()  # modules and plugins live as long as the daemon: out of GC passes
    finally:
        gc.enable()  # also when start-up fails: an in-process caller keeps its collector
    if supervising:
        from connector_cli.cli.serve_processes import supervise

        supervise(config, discovery)
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


def _server(config: ServerConfig, discovery: DiscoveryConfig) -> ConnectorServer:
    """The daemon for `config`, serving what discovery loads (not started yet)."""
    from connector_cli.daemon.server import ConnectorServer, process_started
    from connector_cli.sdk.registry import ConnectorRegistry

    registry = ConnectorRegistry()
    report = _load(registry, discovery, config.strict)
    return ConnectorServer(registry, config, report, launched=process_started())


def _load(registry: ConnectorRegistry, discovery: DiscoveryConfig,
          strict: bool) -> DiscoveryReport:
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

    try:
        report = load_plugins(registry, discovery, refuse="any" if strict else "modules",
                              import_from=os.getcwd(), on_failure=warn)
    except PluginLoadError as exc:
        hint = " (--strict refuses failed plugins)" if strict else ""
        raise PluginLoadError(f"cannot start: {exc}{hint}") from None
    if report.loaded:
        logger.info("loaded %s", ", ".join(o.describe() for o in report.loaded))
    if not len(registry):
        logger.warning("no connectors loaded: install a plugin package or pass --modules")
    return report
