"""`serve`'s options: declared once in `ServerConfig`, and every one reaches the worker
processes of `serve --processes N` unchanged (except those the supervisor sets per worker)."""

from __future__ import annotations

from typing import Any

import click
import pytest

from connector_cli.cli import cli
from connector_cli.cli.serve_command import config_from_params
from connector_cli.cli.serve_processes import worker_argv
from connector_cli.config import DiscoveryConfig, ServerConfig, options

# A value other than the default for each kind of option.
_OTHER: dict[Any, Any] = {
    "text": "127.0.0.1", "count": 3, "seconds": 7.5, "bytes": 2_000_000, "file": "/k/x.pem",
    "dir": "/state", "flag": True, "time": "2030-01-01T00:00:00Z", "apis": ("v1",),
}


def _other(name: str, kind: Any) -> Any:
    if isinstance(kind, tuple):
        return kind[-1]
    return _OTHER[kind]


def serve_command() -> click.Command:
    """`serve` as the CLI group hands it out (with its -h and examples): a bare command's
    first parse would cache a help option without them for every later test."""
    with click.Context(cli) as ctx:
        command = cli.get_command(ctx, "serve")
    assert command is not None
    return command


def _parse(argv: list[str]) -> tuple[ServerConfig, DiscoveryConfig]:
    ctx = serve_command().make_context("serve", argv)
    return config_from_params(ctx.params)


def test_every_option_is_declared_once_and_on_the_command_line() -> None:
    names = [name for name, _default, _spec in options()]
    params = {p.name for p in serve_command().params if isinstance(p, click.Option)}
    arguments = [p.name for p in serve_command().params if isinstance(p, click.Argument)]
    assert arguments == ["pyflyte_server"]  # `pyflyte serve connector`'s word, taken as is
    assert set(names) <= params
    assert params - set(names) == {"modules", "plugins"} | {
        "c0_" + name for name, _d, spec in options() if spec.c0}


def test_every_option_reaches_a_worker() -> None:
    changed = {name: _other(name, spec.kind) for name, _default, spec in options()
               if not spec.per_worker}
    parent = ServerConfig(**changed)
    discovery = DiscoveryConfig(modules=("a", "b:c"), plugins=("shell",))
    argv = worker_argv(parent, discovery, 4711, "/run/state")
    worker, worker_discovery = _parse(argv[4:])
    for name, _default, spec in options():
        if not spec.per_worker:
            assert getattr(worker, name) == getattr(parent, name), name
    assert worker_discovery == discovery
    assert (worker.port, worker.metrics_port, worker.processes) == (4711, None, 1)
    assert worker.worker_state == "/run/state" and worker.timeout is None


@pytest.mark.parametrize("plugins", [None, ()])
def test_all_or_no_plugins_reach_a_worker(plugins: Any) -> None:
    discovery = DiscoveryConfig(plugins=plugins)
    assert _parse(worker_argv(ServerConfig(), discovery, 1, "/s")[4:])[1] == discovery


def test_c0_spellings_are_aliases() -> None:
    config, _ = _parse(["--prometheus_port", "0", "--worker", "4", "--timeout", "3"])
    assert (config.metrics_port, config.workers, config.timeout) == (0, 4, 3.0)
    config, _ = _parse(["--metrics-port", "0"])
    assert config.metrics_port is None  # ours: 0 turns metrics off


def test_pyflyte_serve_connectors_command_line_is_taken() -> None:
    config, discovery = _parse(["connector", "--port", "8001", "--prometheus_port", "9091",
                                "--worker", "10", "--timeout", "5", "--modules", "m"])
    assert (config.port, config.metrics_port, config.workers, config.timeout) == (
        8001, 9091, 10, 5.0)
    assert discovery.modules == ("m",)
    assert _parse(["--api", "v2, v1"])[0].api == ("v1", "v2")
    with pytest.raises(click.BadParameter):
        _parse(["--api", "v3"])


def test_a_bad_value_is_a_usage_error() -> None:
    with pytest.raises(click.BadParameter):
        _parse(["--grace-period", "-1"])
