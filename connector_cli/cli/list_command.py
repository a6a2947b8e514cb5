"""`flyte-connector list`: what connectors are installed, and which plugins failed."""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import click

from connector_cli.cli.options import (
    Command,
    client_tls,
    client_tls_options,
    discovery_config,
    endpoint_option,
    modules_option,
    option,
    plugins_option,
)


@click.command("list", cls=Command)
@modules_option
@plugins_option
@endpoint_option
@client_tls_options
@option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")
@click.pass_context
def list_command(
    ctx: click.Context, modules: tuple[str, ...], plugins: tuple[str, ...],
    endpoint: Optional[str], use_tls: bool, tls_ca: Optional[str], tls_cert: Optional[str],
    tls_key: Optional[str], as_json: bool,
) -> None:
    """List installed connectors and their task types; exit 1 if any plugin failed.

    With --endpoint, ask a running daemon instead (ListConnectors over gRPC).
    """
    if endpoint:
        data = remote_inventory(ctx, endpoint, client_tls(use_tls, tls_ca, tls_cert, tls_key))
    else:
        from connector_cli.discovery import inventory, load_plugins
        from connector_cli.sdk.registry import ConnectorRegistry

        registry = ConnectorRegistry()
        config = discovery_config(modules, plugins)
        data = inventory(registry, load_plugins(registry, config, import_from=os.getcwd()))
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        render_inventory(data)
    if data["failed"]:
        raise click.exceptions.Exit(1)


def remote_inventory(ctx: click.Context, endpoint: str, tls: Any) -> dict:
    """What a running daemon serves, in the shape `inventory` returns."""
    import asyncio

    from connector_cli.client import ConnectorClient
    from connector_cli.errors import UsageError

    for name in ("modules", "plugins"):
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            raise UsageError(f"--{name} loads plugins here; it cannot be used with --endpoint")

    async def ask() -> list:
        async with ConnectorClient(endpoint, tls=tls) as client:
            return await client.list_connectors()

    source = {"kind": "endpoint", "endpoint": endpoint, "description": endpoint}
    connectors = [
        {
            "name": c.name,
            "task_types": [
                {"name": t.name, "version": t.version} for t in c.supported_task_categories
            ],
            "source": source,
        }
        for c in asyncio.run(ask())
    ]
    return {"connectors": connectors, "failed": []}


def render_inventory(data: dict) -> None:
    """Print the connectors table and, if any, the failed plugins table."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if data["connectors"]:
        table = Table(title="Connectors", title_justify="left")
        table.add_column("Connector", style="bold")
        table.add_column("Task types")
        table.add_column("Source")
        for row in data["connectors"]:
            types_ = ", ".join(f"{t['name']} v{t['version']}" for t in row["task_types"])
            source = row["source"].get("description", "code")
            if row.get("sdk"):
                source += f" ({row['sdk']})"
            table.add_row(row["name"], types_, source)
        console.print(table)
    else:
        console.print("No connectors found. Install a plugin package or pass --modules.")
    if data["failed"]:
        failed = Table(title="Failed plugins", title_justify="left", title_style="bold red")
        failed.add_column("Plugin", style="bold")
        failed.add_column("Source")
        failed.add_column("Error", style="red")
        for row in data["failed"]:
            failed.add_row(row["plugin"], row["source"].get("description", ""), row["error"])
        console.print(failed)
