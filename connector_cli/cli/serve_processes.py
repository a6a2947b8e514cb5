"""`serve --processes N` from the command line: the worker command and the supervisor run."""

from __future__ import annotations

import asyncio
import sys

import click

from connector_cli.config import DiscoveryConfig, ServerConfig, options


def worker_argv(config: ServerConfig, discovery: DiscoveryConfig, port: int,
                state: str) -> list[str]:
    """The `flyte-connector serve` command line of one worker: every option the parent was
    given, except those set per worker here (the port it reserved, no metrics endpoint of
    its own, one process, the shared state directory) or acted on by the supervisor
    itself (`--timeout`)."""
    argv = [sys.executable, "-m", "connector_cli", "serve", "--processes", "1",
            "--port", str(port), "--metrics-port", "0", "--worker-state", state]
    for name, default, spec in options():
        value = getattr(config, name)
        if spec.per_worker or value == default:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, tuple):
            value = ",".join(value)
        argv += [flag] if spec.kind == "flag" else [flag, str(value)]
    for module in discovery.modules:
        argv += ["--modules", module]
    if discovery.plugins is not None:
        argv += ["--plugins", ",".join(discovery.plugins) or "none"]
    return argv


def supervise(config: ServerConfig, discovery: DiscoveryConfig) -> None:
    """Run the supervisor until a signal; its exit status becomes the command's."""
    from connector_cli.daemon.supervisor import Supervisor

    supervisor = Supervisor(config, config.processes, lambda port, state: worker_argv(
        config, discovery, port, state))
    try:
        code = asyncio.run(supervisor.run())
    except KeyboardInterrupt:
        code = 130
    if code:
        raise click.exceptions.Exit(code)
