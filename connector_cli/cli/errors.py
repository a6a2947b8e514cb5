"""How the command line reports failure: one `Error: ...` line and an exit code."""

from __future__ import annotations

import sys
import traceback

import click

EXIT_USAGE = 2


class CLIError(click.ClickException):
    """One line on stderr and an exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it on the class


def as_cli_error(exc: Exception, debug: bool) -> CLIError:
    """Map a core error to one line: usage errors exit 2, other errors 1."""
    from connector_cli.errors import ConnectorError, UsageError

    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, UsageError):
        return CLIError(str(exc), EXIT_USAGE)
    if isinstance(exc, ConnectorError):
        return CLIError(str(exc))
    hint = "" if debug else " (run with --debug for the traceback)"
    return CLIError(f"unexpected {type(exc).__name__}: {exc}{hint}")
