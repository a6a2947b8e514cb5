"""Shared click options: one spelling, one environment variable per option.

Every option `--some-name` is also read from `FLYTE_CONNECTOR_SOME_NAME`, whichever command
uses it. List options accept several values separated by commas or spaces.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional

import click

from connector_cli.config import DiscoveryConfig

ENV_PREFIX = "FLYTE_CONNECTOR_"
_F = Callable[..., Any]


def envvar_for(long_name: str) -> str:
    """An option's environment variable: '--metrics-port' -> FLYTE_CONNECTOR_METRICS_PORT."""
    return ENV_PREFIX + long_name.lstrip("-").replace("-", "_").upper()


class Command(click.Command):
    """A click command whose short options (`-m x`) skip click's long-option lookup.

    click first tries every option as a long one; for `-m` that fails and builds a "did
    you mean" list with difflib, only to throw it away and take the short option: 0.5 ms
    of every start and 0.2 MiB the daemon would keep. A mistyped long option (`--modlues`)
    still gets its suggestion. With a click whose parser differs, nothing changes.
    """

    def make_parser(self, ctx: click.Context) -> Any:
        parser = super().make_parser(ctx)
        match_long = getattr(parser, "_match_long_opt", None)
        long = getattr(parser, "_long_opt", None)
        prefixes = getattr(parser, "_opt_prefixes", None)
        if match_long is None or not isinstance(long, dict) or not isinstance(prefixes, set):
            return parser

        def match(opt: str, explicit_value: Any, state: Any) -> Any:
            if opt not in long and opt[:2] not in prefixes:  # click goes on as a short one
                raise click.NoSuchOption(opt, ctx=ctx)
            return match_long(opt, explicit_value, state)

        parser._match_long_opt = match  # type: ignore[method-assign]
        return parser


def option(*param_decls: str, **attrs: Any) -> Callable[[_F], _F]:
    """`click.option` with the project's environment variable derived from the long name."""
    long_name = next(d for d in param_decls if d.startswith("--")).split("/")[0]
    attrs.setdefault("envvar", envvar_for(long_name))
    attrs.setdefault("show_envvar", True)
    return click.option(*param_decls, **attrs)


def split_list(
    ctx: click.Context, param: click.Parameter, value: Optional[tuple[str, ...]]
) -> Optional[tuple[str, ...]]:
    """Flatten a multiple option whose values may themselves be comma/space separated."""
    if value is None:
        return None
    items = [item for raw in value for item in re.split(r"[,\s]+", raw) if item]
    return tuple(dict.fromkeys(items))


def list_option(*param_decls: str, **attrs: Any) -> Callable[[_F], _F]:
    """A repeatable option that also takes comma/space separated values."""
    return option(*param_decls, multiple=True, callback=split_list, **attrs)


modules_option = list_option(
    "--modules",
    "-m",
    metavar="MODULE[:ATTR]",
    help="Import connectors from these modules (repeatable; comma/space separated). "
    "The current directory is importable.",
)

plugins_option = list_option(
    "--plugins",
    metavar="NAME",
    help="Load only these installed plugins (entry-point or distribution names); "
    "'none' loads none, 'all' (the default) loads every one.",
)


def discovery_config(modules: tuple[str, ...], plugins: tuple[str, ...]) -> DiscoveryConfig:
    """Build the discovery config from the --modules/--plugins values."""
    lowered = {p.lower() for p in plugins}
    selected: Optional[tuple[str, ...]]
    if not plugins or "all" in lowered:
        selected = None
    elif lowered == {"none"}:
        selected = ()
    else:
        selected = tuple(p for p in plugins if p.lower() != "none")
    return DiscoveryConfig(modules=modules, plugins=selected)


def check_endpoint(
    ctx: click.Context, param: click.Parameter, value: Optional[str]
) -> Optional[str]:
    """A usage error (exit 2) for an endpoint that is not HOST:PORT, e.g. a URL."""
    if value is None:
        return None
    from connector_cli.client import endpoint_problem

    problem = endpoint_problem(value)
    if problem is not None:
        raise click.BadParameter(problem, ctx, param)
    return value


endpoint_option = option(
    "--endpoint",
    metavar="HOST:PORT",
    default=None,
    callback=check_endpoint,
    help="Talk to a running connector daemon over gRPC instead of loading plugins here.",
)


def client_tls_options(fn: _F) -> _F:
    """TLS options of a client talking to a daemon (`--endpoint`): CA, client cert and key."""
    fn = option("--tls-key", metavar="FILE", default=None,
                help="Client private key (PEM) for mutual TLS.")(fn)
    fn = option("--tls-cert", metavar="FILE", default=None,
                help="Client certificate (PEM) for mutual TLS.")(fn)
    fn = option("--tls-ca", metavar="FILE", default=None,
                help="CA certificate (PEM) to verify the daemon; implies --tls.")(fn)
    fn = option("--tls", "use_tls", is_flag=True, default=False,
                help="Connect with TLS, verifying the daemon against the system CAs.")(fn)
    return fn


def client_tls(use_tls: bool, tls_ca: Optional[str], tls_cert: Optional[str],
               tls_key: Optional[str]) -> Any:
    """A `ClientTLS` when any TLS option is set, else None (plaintext h2c)."""
    if not (use_tls or tls_ca or tls_cert or tls_key):
        return None
    from connector_cli.client import ClientTLS

    return ClientTLS(ca_cert=tls_ca, cert=tls_cert, key=tls_key)
