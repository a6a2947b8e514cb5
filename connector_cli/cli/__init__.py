"""The `flyte-connector` command line: parses options, calls the core, maps errors.

This package is the only place that imports click and rich. Core errors become one
`Error: ...` line and an exit code (2 for bad usage or input, 1 otherwise); `--debug`
also prints the traceback.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any, Optional, Sequence

import click

from connector_cli._version import __version__
from connector_cli.cli.options import option

EXIT_USAGE = 2


class CLIError(click.ClickException):
    """One line on stderr and an exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the one place errors become a line
            raise _as_cli_error(exc, debug=bool(ctx.meta.get("debug"))) from exc


def _as_cli_error(exc: Exception, debug: bool) -> CLIError:
    from connector_cli.errors import ConnectorError, UsageError

    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, UsageError):
        return CLIError(str(exc), EXIT_USAGE)
    if isinstance(exc, ConnectorError):
        return CLIError(str(exc))
    hint = "" if debug else " (run with --debug for the traceback)"
    return CLIError(f"unexpected {type(exc).__name__}: {exc}{hint}")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="flyte-connector")
@option("--debug", is_flag=True, help="Print full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Build, serve and try Flyte connectors."""
    ctx.meta["debug"] = debug


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="flyte-connector")


# Each module registers its commands on `cli`.
from connector_cli.cli import inventory as _inventory  # noqa: E402,F401
from connector_cli.cli import run_task as _run_task  # noqa: E402,F401
from connector_cli.cli import scaffold as _scaffold  # noqa: E402,F401
from connector_cli.cli import serve as _serve  # noqa: E402,F401
