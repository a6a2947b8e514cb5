"""How `flyte-connector test` shows a run: a rich live status line on a terminal, plain
timestamped lines otherwise, or one JSON object with `--json`. Every text passes through
the run's `SecretMasker` before it is printed.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import sys
import time
from typing import TYPE_CHECKING, Any, Optional

import click

from connector_cli.run.types import PollUpdate, RunObserver, RunRequest, RunResult

if TYPE_CHECKING:
    from connector_cli.masking import SecretMasker
    from connector_cli.run.task_files import LoadedTask

_META_PREVIEW = 160


def make_observer(as_json: bool, progress: str, masker: SecretMasker) -> Renderer:
    """The renderer for `--json` / `--progress` and whether stdout is a terminal."""
    if as_json:
        return JsonRenderer(masker)
    if progress == "live" or (progress == "auto" and sys.stdout.isatty()):
        return LiveRenderer(masker)
    return PlainRenderer(masker)


def result_document(result: RunResult, request: RunRequest, loaded: LoadedTask,
                    target: str, masker: SecretMasker) -> dict[str, Any]:
    """The `--json` object: everything about the run, secrets masked."""
    from connector_cli.literals import to_json

    execution = request.task_execution_metadata.task_execution_id.node_execution_id
    doc = {
        "status": result.status,
        "exit_code": result.exit_code,
        "phase": result.phase or None,
        "message": result.message,
        "error": result.error,
        "outputs": {name: to_json(value) for name, value in result.output_values.items()},
        "log_links": [{"name": link.name, "uri": link.uri} for link in result.log_links],
        "custom_info": result.custom_info,
        "resource_meta": meta_document(result.resource_meta),
        "duration": round(result.duration, 3),
        "polls": result.polls,
        "deleted": result.deleted,
        "delete_error": result.delete_error,
        "logs": result.logs,
        "metrics": result.metrics,
        "task": {"file": loaded.path, "form": loaded.form, "type": request.template.type,
                 "version": request.template.task_type_version},
        "execution": execution.execution_id.name,
        "output_prefix": request.output_prefix,
        "target": target,
        "connection": request.connection.masked(),
    }
    return masker.data(doc)  # type: ignore[no-any-return]


def meta_document(meta: Optional[bytes]) -> Any:
    """Resource meta as JSON data when it is JSON (as `ResourceMeta.encode` makes), else
    `{"base64": ...}`; a signed handle shows the connector's own meta inside it."""
    if meta is None:
        return None
    from connector_cli.signing import unsigned_payload

    meta = unsigned_payload(meta)
    try:
        return json.loads(meta)
    except ValueError:
        return {"base64": base64.b64encode(meta).decode("ascii")}


METRIC_COLUMNS = ("Metric", "Labels", "Last value", "Samples")


def metric_rows(metric: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Table rows for one `--metrics` entry: one per series of its Prometheus-style result
    (labels without __name__, the latest sample, how many), or one 'no data' row."""
    name = str(metric.get("metric", ""))
    data = metric.get("data") or {}
    series = data.get("result") if isinstance(data, dict) else None
    if not series:
        return [(name, "", "no data", "0")]
    rows = []
    for item in series:
        labels = {k: v for k, v in (item.get("metric") or {}).items() if k != "__name__"}
        values = item.get("values") or ([item["value"]] if item.get("value") else [])
        last = str(values[-1][1]) if values else ""
        rows.append((name, ", ".join(f"{k}={v}" for k, v in sorted(labels.items())),
                     _number(last), str(len(values))))
    return rows


def _number(text: str) -> str:
    """A sample value as a short number: 0.008050999999999999 -> 0.008051."""
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if value.is_integer() else f"{value:.6g}"


def aligned(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as lines of left-aligned columns two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


class Renderer(RunObserver):
    """A `RunObserver` that also frames the run: start, interrupts and the final summary."""

    def __init__(self, masker: SecretMasker) -> None:
        self.masker = masker
        self.target = ""
        self.started_at = time.monotonic()

    def starting(self, loaded: LoadedTask, request: RunRequest, target: str) -> None:
        """Before `check`/`create`."""
        self.target = target
        self.started_at = time.monotonic()

    def interrupted(self, signal_name: str, second: bool) -> None:
        """A signal arrived; the first stops polling, the second skips the delete."""

    def finished(self, result: RunResult, request: RunRequest, loaded: LoadedTask) -> None:
        """The run is over."""


class JsonRenderer(Renderer):
    """Prints nothing while running, then the one result object."""

    def finished(self, result: RunResult, request: RunRequest, loaded: LoadedTask) -> None:
        doc = result_document(result, request, loaded, self.target, self.masker)
        click.echo(json.dumps(doc, indent=2, sort_keys=False, default=str))


class _TextRenderer(Renderer):
    """What plain and live output share: the wording of every event and the summary."""

    def emit(self, text: str, style: str = "") -> None:
        raise NotImplementedError

    def starting(self, loaded: LoadedTask, request: RunRequest, target: str) -> None:
        super().starting(loaded, request, target)
        template = request.template
        self.emit(f"task type {template.type!r} v{template.task_type_version} from "
                  f"{loaded.path} ({loaded.form}), {target}")
        self.emit(f"output prefix: {request.output_prefix}")
        secrets = sorted(request.connection.secrets)
        if secrets:
            self.emit(f"secrets: {', '.join(secrets)} (values hidden)")

    def created(self, resource_meta: bytes) -> None:
        text = self.masker.text(json.dumps(meta_document(resource_meta)))
        if len(text) > _META_PREVIEW:
            text = text[: _META_PREVIEW - 3] + "..."
        self.emit(f"created the job; resource meta: {text}")

    def polled(self, update: PollUpdate) -> None:
        for link in update.new_log_links:
            self.emit(f"log link: {self.masker.text(link.name)} {self.masker.text(link.uri)}",
                      "cyan")

    def log_lines(self, lines: list[str]) -> None:
        for line in lines:
            self.emit(f"log | {self.masker.text(line)}", "dim")

    def note(self, text: str) -> None:
        self.emit(self.masker.text(text), "yellow")

    def deleting(self, reason: str) -> None:
        self.emit(f"{reason.replace('_', ' ')}: deleting the job", "yellow")

    def deleted(self, error: Optional[str]) -> None:
        if error:
            self.emit(f"delete failed: {self.masker.text(error)}; the job may still be running",
                      "red")
        else:
            self.emit("deleted the job", "yellow")

    def interrupted(self, signal_name: str, second: bool) -> None:
        if second:
            self.emit(f"{signal_name} again: not waiting for delete", "red")
        else:
            self.emit(f"{signal_name}: stopping (press Ctrl-C again to skip the delete)",
                      "yellow")

    def summary_lines(self, result: RunResult) -> tuple[Optional[str], list[str]]:
        """The closing line (None after an error, which gets its own line) and details."""
        what = result.status.replace("_", " ")
        head = f"{what} in {result.duration:.1f}s after {result.polls} poll(s)"
        if result.phase:
            head += f", phase {result.phase}"
        if result.message:
            head += f": {self.masker.text(result.message)}"
        return (None if result.status in ("error", "invalid_input") else head), []

    def metric_rows(self, result: RunResult) -> list[tuple[str, str, str, str]]:
        """(metric, labels, last value, samples) per series of `--metrics`, masked."""
        mask = self.masker.text
        return [(mask(name), mask(labels), mask(value), samples)
                for metric in result.metrics
                for name, labels, value, samples in metric_rows(metric)]

    def output_rows(self, result: RunResult) -> list[tuple[str, str]]:
        """(name, JSON text) per output, masked."""
        from connector_cli.literals import to_json

        return [(name, self.masker.text(json.dumps(to_json(value), default=str)))
                for name, value in result.output_values.items()]


class PlainRenderer(_TextRenderer):
    """Timestamped lines, one per event, for logs and pipes."""

    def emit(self, text: str, style: str = "") -> None:
        stamp = dt.datetime.now().isoformat(sep=" ", timespec="seconds")
        click.echo(f"{stamp} {text}")

    def polled(self, update: PollUpdate) -> None:
        if update.phase_changed or update.message != getattr(self, "_last_message", None):
            message = f": {self.masker.text(update.message)}" if update.message else ""
            self.emit(f"{update.phase}{message} (poll {update.polls}, {update.elapsed:.1f}s)")
        self._last_message = update.message
        super().polled(update)

    def finished(self, result: RunResult, request: RunRequest, loaded: LoadedTask) -> None:
        head, details = self.summary_lines(result)
        if head:
            self.emit(head)
        for line in details:
            click.echo(f"  {line}")
        metrics = self.metric_rows(result)
        if metrics:
            click.echo("metrics:")
            for line in aligned([METRIC_COLUMNS, *metrics]):
                click.echo(f"  {line}")
        rows = self.output_rows(result)
        if rows:
            click.echo("outputs:")
            for name, value in rows:
                click.echo(f"  {name} = {value}")


class LiveRenderer(_TextRenderer):
    """A rich live status line (phase, elapsed, polls, message) above a kept history."""

    def __init__(self, masker: SecretMasker) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.spinner import Spinner

        super().__init__(masker)
        self.console = Console(force_terminal=True) if not sys.stdout.isatty() else Console()
        self.spinner = Spinner("dots")
        self.phase, self.message, self.polls = "CREATING", "", 0
        self.live = Live(self, console=self.console, refresh_per_second=8, transient=True)

    def __rich__(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        elapsed = time.monotonic() - self.started_at
        status = Text.assemble((f"{self.phase:<10}", "bold"), f"  {elapsed:6.1f}s",
                               f"  poll {self.polls}", ("  " + self.message, "dim"))
        grid = Table.grid(padding=(0, 1))
        grid.add_row(self.spinner, status)
        return grid

    def emit(self, text: str, style: str = "") -> None:
        from rich.text import Text

        stamp = dt.datetime.now().strftime("%H:%M:%S")
        self.console.print(Text.assemble((stamp + " ", "dim"), (text, style)))

    def created(self, resource_meta: bytes) -> None:
        """The resource meta on one line, cut to the terminal's width."""
        from rich.text import Text

        text = self.masker.text(json.dumps(meta_document(resource_meta)))
        stamp = dt.datetime.now().strftime("%H:%M:%S")
        line = Text.assemble((stamp + " ", "dim"), f"created the job; resource meta: {text}")
        self.console.print(line, no_wrap=True, overflow="ellipsis", crop=True)

    def starting(self, loaded: LoadedTask, request: RunRequest, target: str) -> None:
        super().starting(loaded, request, target)
        self.live.start()

    def polled(self, update: PollUpdate) -> None:
        if update.phase_changed:
            message = f": {self.masker.text(update.message)}" if update.message else ""
            self.emit(f"-> {update.phase}{message}", "bold")
        self.phase, self.polls = update.phase, update.polls
        self.message = self.masker.text(update.message)
        super().polled(update)

    def finished(self, result: RunResult, request: RunRequest, loaded: LoadedTask) -> None:
        from rich.table import Table

        self.live.stop()
        style = "green" if result.status == "succeeded" else "red"
        head, details = self.summary_lines(result)
        if head:
            self.console.print(head, style=f"bold {style}", highlight=False)
        for line in details:
            self.console.print(f"  {line}", highlight=False)
        metrics = self.metric_rows(result)
        if metrics:
            table = Table(title="Metrics", title_justify="left")
            for column in METRIC_COLUMNS:
                right = column in METRIC_COLUMNS[2:]
                table.add_column(column, justify="right" if right else "left")
            for row in metrics:
                table.add_row(*row)
            self.console.print(table)
        rows = self.output_rows(result)
        if rows:
            table = Table(title="Outputs", title_justify="left")
            table.add_column("Name", style="bold")
            table.add_column("Value")
            for name, value in rows:
                table.add_row(name, value)
            self.console.print(table)
