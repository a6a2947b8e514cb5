"""The `flyte-connector` command line: parses options, calls the core, maps errors.

This package is the only place that imports click and rich. Core errors become one
`Error: ...` line and an exit code (2 for bad usage or input, 1 otherwise); `--debug`
also prints the traceback. Each command lives in its own module and is added here.
"""

from __future__ import annotations

import importlib
from typing import Any, Optional, Sequence

import click

from connector_cli._version import __version__
from connector_cli.cli.errors import EXIT_USAGE, CLIError, as_cli_error
from connector_cli.cli.examples import add_help
from connector_cli.cli.options import option

__all__ = ["EXIT_USAGE", "CLIError", "cli", "main"]

# Each command's module is imported when that command runs (or a help page lists it), so
# `serve` does not pay for `test`'s imports, nor `list` for the daemon's.
COMMANDS = {
    "init": ("connector_cli.cli.authoring_commands", "init_command"),
    "list": ("connector_cli.cli.list_command", "list_command"),
    "serve": ("connector_cli.cli.serve_command", "serve_command"),
    "template": ("connector_cli.cli.authoring_commands", "template_command"),
    "test": ("connector_cli.cli.test_command", "test_command"),
}


HELP_OPTIONS = ["-h", "--help"]


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        if cmd_name not in COMMANDS:
            return None
        if cmd_name not in self.commands:
            module, name = COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module), name)
            add_help(command, cmd_name)
            command.context_settings.setdefault("help_option_names", HELP_OPTIONS)
            self.add_command(command, cmd_name)
        return self.commands[cmd_name]

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            raise as_cli_error(exc, debug=bool(ctx.meta.get("debug"))) from exc


@click.group(cls=_Group, context_settings={"help_option_names": HELP_OPTIONS})
@click.version_option(__version__, "--version", "-V", prog_name="flyte-connector")
@option("--debug", is_flag=True, help="Print full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Build, serve and try Flyte connectors."""
    ctx.meta["debug"] = debug
    if not debug:
        silence_grpc_logging()


def silence_grpc_logging() -> None:
    """Keep gRPC C-core's own log lines (`I1129 ... ssl_transport_security.cc ...`) off
    stderr: every failure reaches the user as one `Error:` line (or a daemon log record)
    anyway, and stray lines would break `--log-format json`. Runs before grpc is imported;
    an explicit GRPC_VERBOSITY (or --debug) wins."""
    import os

    os.environ.setdefault("GRPC_VERBOSITY", "NONE")


add_help(cli)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="flyte-connector")
