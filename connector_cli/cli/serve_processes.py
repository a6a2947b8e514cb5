"""`serve --processes N` from the command line: the worker command and the supervisor run."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click

from connector_cli.config import ServerConfig

# serve options passed to every worker unchanged; the rest are set per worker below
_PASSED = ("host", "workers", "grace_period", "tls_cert", "tls_key", "tls_client_ca",
           "max_message_size", "max_inflight_bytes", "meta_key_file", "previous_meta_key_file",
           "state_dir", "log_level", "log_format", "worker")


def worker_argv(params: dict[str, Any], port: int, state: str) -> list[str]:
    """The `flyte-connector serve` command line of one worker: the parent's options, the
    port it reserved, no metrics endpoint of its own, and the shared state directory."""
    argv = [sys.executable, "-m", "connector_cli", "serve", "--processes", "1",
            "--port", str(port), "--metrics-port", "0", "--worker-state", state]
    for name in _PASSED:
        if params.get(name) is not None:
            argv += ["--" + name.replace("_", "-"), str(params[name])]
    for module in params.get("modules") or ():
        argv += ["--modules", module]
    for plugin in params.get("plugins") or ():
        argv += ["--plugins", plugin]
    if params.get("strict"):
        argv.append("--strict")
    return argv


def supervise(config: ServerConfig, processes: int, params: dict[str, Any]) -> None:
    """Run the supervisor until a signal; its exit status becomes the command's."""
    from connector_cli.daemon.supervisor import Supervisor

    supervisor = Supervisor(config, processes, lambda port, state: worker_argv(
        params, port, state))
    try:
        code = asyncio.run(supervisor.run())
    except KeyboardInterrupt:
        code = 130
    if code:
        raise click.exceptions.Exit(code)
