"""`flyte-connector test`: run a connector end to end (see connector_cli.run.runner).

Parses options into a `RunRequest` and `RunOptions`, picks the run target (in-process or
`--endpoint`), runs the loop with Ctrl-C/SIGTERM wired to `Run.interrupt`, renders
progress (cli.test_view) and exits with the run's status code.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

import click

from connector_cli.cli.errors import EXIT_USAGE, CLIError
from connector_cli.cli.options import (
    Command,
    client_tls,
    client_tls_options,
    discovery_config,
    endpoint_option,
    list_option,
    modules_option,
    option,
    plugins_option,
)

if TYPE_CHECKING:
    from connector_cli.cli.test_view import Renderer
    from connector_cli.masking import SecretMasker
    from connector_cli.run.runner import Run
    from connector_cli.run.task_files import LoadedTask
    from connector_cli.run.types import RunOptions, RunRequest, RunResult, RunTarget


class _TestCommand(Command):
    """`--json` promises one document on stdout even when an option does not parse."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        as_json = "--json" in args  # before parsing: the parser consumes `args`
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            if as_json:
                _echo_error(exc.format_message(), EXIT_USAGE)
            raise


@click.command("test", cls=_TestCommand)
@click.argument("task", metavar="TASK")
@option("--inputs", "inputs_file", metavar="FILE", default=None,
        help="Input values: a JSON (or YAML) object of input name -> value.")
@option("--input", "-i", "input_pairs", metavar="NAME=VALUE", multiple=True,
        help="One input (repeatable); VALUE is JSON when it parses, else a string. "
        "Wins over --inputs.")
@option("--output-prefix", metavar="PATH", default=None,
        help="Where the job may write outputs. Default: a fresh temporary directory, "
        "removed after the run (unless --keep).")
@option("--poll-interval", type=click.FloatRange(min=0, min_open=True), default=1.0,
        show_default=True, metavar="SECONDS",
        help="Seconds between polls; after a minute it grows gently, up to 15 s.")
@option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
        metavar="SECONDS", help="Give up (and delete the job) after this long. Default: none.")
@option("--get-failures", type=click.IntRange(min=0), default=5, show_default=True,
        metavar="N", help="Failed get calls to tolerate before giving up and deleting the "
        "job, counted over the whole run as the Flyte backend counts them.")
@option("--secret", "secret_pairs", metavar="NAME=VALUE", multiple=True,
        help="A connection secret (repeatable). Also read from FLYTE_SECRET_<NAME>.")
@list_option("--secrets-file", metavar="FILE",
             help="Secrets from a JSON object or a dotenv file (repeatable).")
@option("--logs", is_flag=True, help="Fetch and print the job's logs (get_logs) at the end.")
@option("--follow", is_flag=True, help="Print the job's logs while it runs (implies --logs).")
@option("--metrics", is_flag=True, help="Fetch and print the job's metrics (get_metrics).")
@option("--keep", is_flag=True,
        help="Do not delete the job on Ctrl-C, timeout or error, and keep the temporary "
        "output prefix.")
@option("--json", "as_json", is_flag=True, help="Print one JSON result object for scripts.")
@option("--progress", type=click.Choice(["auto", "live", "plain"]), default="auto",
        show_default=True,
        help="Live status line (terminal), plain timestamped lines, or pick by the output.")
@endpoint_option
@client_tls_options
@modules_option
@plugins_option
@click.pass_context
def test_command(ctx: click.Context, task: str, **opts: Any) -> None:
    """Run TASK's connector: create, poll get until done, delete on abort.

    TASK is a file holding a TaskTemplate or TaskSpec (binary protobuf, proto-JSON or
    YAML), or MODULE:ATTR naming a Flyte SDK or flytekit task object, which its SDK
    serializes into the TaskTemplate the backend would send.
    Exit status: 0 succeeded, 1 failed/aborted/error, 2 bad usage or input,
    3 timed out, 130 interrupted.
    """
    if opts["as_json"]:
        with _json_on_failure():
            _run_command(ctx, task, opts)
    else:
        _run_command(ctx, task, opts)


def _run_command(ctx: click.Context, task: str, opts: dict[str, Any]) -> None:
    from connector_cli.cli.test_view import make_observer

    loaded, request, options = _prepare(task, opts)
    temporary = None if opts["output_prefix"] or opts["keep"] else request.output_prefix
    try:
        masker = _masker(request)
        observer = make_observer(opts["as_json"], opts["progress"], masker)
        target = _target(opts)
        observer.starting(loaded, request, target.description)
        with _masked_warnings():
            result = _execute(target, request, options, observer, loaded.connector)
        observer.target = target.description
        observer.finished(result, request, loaded)
        if temporary is not None and any(Path(temporary).iterdir()):
            observer.note(f"removing {temporary} with the job's files "
                          "(--keep or --output-prefix PATH keeps them)")
    finally:
        if temporary is not None:
            import shutil

            shutil.rmtree(temporary, ignore_errors=True)
    _exit(ctx, result, masker)


@contextlib.contextmanager
def _json_on_failure() -> Iterator[None]:
    """`--json` prints one document whatever happens: an error before or around the run
    (a bad input, an unknown task type) becomes a document with its status and error."""
    try:
        yield
    except (click.exceptions.Exit, KeyboardInterrupt):
        raise
    except CLIError as exc:
        if not getattr(exc, "reported", False):
            _echo_error(exc.message, exc.exit_code)
        raise
    except Exception as exc:
        from connector_cli.cli.errors import as_cli_error

        error = as_cli_error(exc, debug=False)
        _echo_error(error.message, error.exit_code)
        raise


def _echo_error(message: str, exit_code: int) -> None:
    import json

    from connector_cli.run.types import EXIT_CODES

    status = {code: name for name, code in EXIT_CODES.items()}.get(exit_code, "error")
    status = "invalid_input" if exit_code == EXIT_USAGE else status
    click.echo(json.dumps({"status": status, "exit_code": exit_code, "error": message},
                          indent=2))


def _exit(ctx: click.Context, result: Any, masker: Any) -> None:
    """Raise the run's error line and exit status (nothing when it succeeded)."""
    debug = bool(ctx.meta.get("debug"))
    if result.error:
        if debug and result.exception is not None:
            sys.stderr.write(masker.text("".join(traceback.format_exception(result.exception))))
        hint = _hint(result.exception, debug or result.status == "invalid_input")
        error = CLIError(masker.text(result.error) + hint, result.exit_code)
        error.reported = True  # type: ignore[attr-defined]  # the result was printed
        raise error
    if result.exit_code:
        raise click.exceptions.Exit(result.exit_code)


@contextlib.contextmanager
def _masked_warnings() -> Iterator[None]:
    """Warnings on stderr as Python's last-resort handler prints them, but with the run's
    secrets masked (connector code logs what it likes). Left alone when logging is set up."""
    import logging

    from connector_cli.masking import MaskingFilter

    root = logging.getLogger()
    if root.handlers:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.addFilter(MaskingFilter())
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def _hint(exc: Optional[BaseException], quiet: bool) -> str:
    from connector_cli.errors import RemoteError

    if quiet or exc is None:
        return ""
    if isinstance(exc, RemoteError):
        return " (the daemon's log has the traceback)"
    return " (run with --debug for the traceback)"


def _prepare(task: str, opts: dict[str, Any]) -> tuple[LoadedTask, RunRequest, RunOptions]:
    """Everything before the run; bad input raises `UsageError` (exit 2)."""
    from connector_cli.run.request import build_request
    from connector_cli.run.secret_sources import collect_secrets
    from connector_cli.run.task_files import read_inputs
    from connector_cli.run.task_objects import load_any
    from connector_cli.run.types import RunOptions

    loaded = load_any(task, import_from=os.getcwd())
    values = read_inputs(opts["inputs_file"], opts["input_pairs"])
    secrets = collect_secrets(opts["secret_pairs"], opts["secrets_file"] or (), os.environ)
    request = build_request(loaded.template, values, defaults=loaded.defaults, secrets=secrets,
                            output_prefix=opts["output_prefix"])
    logs = "follow" if opts["follow"] else "end" if opts["logs"] else "none"
    options = RunOptions(poll_interval=opts["poll_interval"], timeout=opts["timeout"],
                         keep=opts["keep"], logs=logs, metrics=opts["metrics"],
                         get_failures=opts["get_failures"])
    return loaded, request, options


def _masker(request: RunRequest) -> SecretMasker:
    from connector_cli.masking import SecretMasker

    return SecretMasker(request.connection.secrets.values())


def _target(opts: dict[str, Any]) -> RunTarget:
    from connector_cli.run.targets import DaemonTarget, InProcessTarget

    if opts["endpoint"]:
        if opts["modules"]:
            raise CLIError("--modules loads connectors here; it cannot be combined with "
                           "--endpoint (load them in the daemon instead)", EXIT_USAGE)
        tls = client_tls(opts["use_tls"], opts["tls_ca"], opts["tls_cert"], opts["tls_key"])
        return DaemonTarget(opts["endpoint"], tls)
    from connector_cli.discovery import load_plugins
    from connector_cli.sdk.registry import ConnectorRegistry

    registry = ConnectorRegistry()
    config = discovery_config(opts["modules"], opts["plugins"])
    report = load_plugins(registry, config, import_from=os.getcwd())
    failures = [f"{f.origin.name}: {f.error}" for f in report.failed]
    return InProcessTarget(registry, plugin_failures=failures)


def _execute(target: RunTarget, request: RunRequest, options: RunOptions,
             observer: Renderer, connector: str = "") -> RunResult:
    """Run the loop; SIGINT/SIGTERM ask it to stop (see `_main`)."""
    import asyncio

    from connector_cli.run.runner import Run

    run = Run(target, request, options, observer)
    try:
        return asyncio.run(_main(run, target, observer, connector))
    except KeyboardInterrupt:  # no loop signal handlers on this platform
        raise click.exceptions.Exit(130) from None


async def _main(run: Run, target: RunTarget, observer: Renderer,
                connector: str = "") -> RunResult:
    """The run under the stop policy of `connector_cli.shutdown`: the first SIGINT/SIGTERM
    stops polling and deletes the job, SIGINT again skips waiting for the delete.
    `connector` is the class a task object names, suggested when nothing serves it."""
    from connector_cli.errors import ConnectorNotFound
    from connector_cli.shutdown import StopSignals

    def stop_requested(reason: str) -> None:
        observer.interrupted(reason.removeprefix("received "), second=False)
        run.interrupt()

    def forced(name: str) -> None:
        observer.interrupted(name, second=True)
        run.interrupt()

    try:
        async with StopSignals(on_request=stop_requested, on_force=forced):
            return await run.execute()
    except ConnectorNotFound as exc:
        hint = ""
        if connector and target.description == "in-process":
            hint = (f"; the task names {connector}: install its package, or pass "
                    f"-m {connector}")
        raise CLIError(str(exc) + hint, EXIT_USAGE) from None
    finally:
        await target.close()
