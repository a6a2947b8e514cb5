"""Run one task end to end: create -> get ... -> delete, the way the Flyte target would.

`Run` drives a `RunTarget` (in-process connector or a remote daemon, see
`connector_cli.run.targets`) and reports progress to a `RunObserver`, so the CLI decides how
it looks. Whatever stops the loop after `create` (an interrupt, the timeout, a connector
error) ends with `delete` on the same resource meta unless `keep` is set, so no external
job is left running. Both targets yield the same `RunResult`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Optional, TypeVar

from flyteidl2.core.execution_pb2 import TaskExecution
from flyteidl2.task.common_pb2 import Outputs
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError

from connector_cli.errors import ConnectorError, LiteralError, UsageError, bounded, describe_failure
from connector_cli.literals import literal_to_python
from connector_cli.run.types import (
    PollUpdate,
    RunObserver,
    RunOptions,
    RunRequest,
    RunResult,
    RunTarget,
    Unsupported,
)
from connector_cli.sdk.connector import is_terminal_phase, phase_name

if TYPE_CHECKING:
    from flyteidl2.connector.connector_pb2 import Resource

__all__ = ["Run", "next_poll_delay", "read_outputs_file"]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


class _Stopped(Exception):
    """The wait ended because of an interrupt or the deadline; args[0] is the status."""


class Run:
    """One end-to-end run. Call `execute()` once; `interrupt()` from a signal handler."""

    def __init__(self, target: RunTarget, request: RunRequest, options: RunOptions,
                 observer: Optional[RunObserver] = None) -> None:
        self.target, self.request, self.options = target, request, options
        self.observer = observer or RunObserver()
        self.result = RunResult()
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._start = self._wall_start = 0.0
        self._deadline: Optional[float] = None
        self._links: set[tuple[str, str]] = set()
        self._logs: Optional[_LogCursor] = None

    @property
    def stopping(self) -> bool:
        """True once `interrupt` was called."""
        return self._stop.is_set()

    def interrupt(self) -> None:
        """First call: stop polling and delete the job. Second call: skip the delete."""
        if self._stop.is_set():
            self._force.set()
        self._stop.set()

    async def execute(self) -> RunResult:
        """Check the connector exists (else `ConnectorNotFound`), then run to the end."""
        self._start, self._wall_start = time.monotonic(), time.time()
        if self.options.timeout is not None:
            self._deadline = self._start + self.options.timeout
        await self.target.check(self.request.category)
        try:
            resource_meta = await self._create()
            if resource_meta is not None:
                await self._follow(resource_meta)
        finally:
            self.result.duration = time.monotonic() - self._start
        return self.result

    async def _create(self) -> Optional[bytes]:
        creating = asyncio.ensure_future(self.target.create(self.request))
        try:
            resource_meta = await self._race(asyncio.shield(creating))
        except _Stopped as stop:
            self.result.status = stop.args[0]
            await self._late_create(creating, stop.args[0])
            return None
        except Exception as exc:  # noqa: BLE001 - the connector's own error is reported
            status = "invalid_input" if isinstance(exc, UsageError) else "error"
            self._fail(status, describe_failure(exc, self._where("create")), exc)
            return None
        self._created(resource_meta)
        return resource_meta

    async def _late_create(self, creating: asyncio.Future[bytes], reason: str) -> None:
        """Stopped during `create`: let it finish (bounded) so its job can be deleted."""
        if self.options.keep:
            creating.cancel()
            return
        self.observer.note("waiting for create to return, to delete its job")
        try:
            resource_meta = await self._race(creating, self.options.delete_timeout, self._force)
        except _Stopped:
            self.observer.note("create did not return; if it started a job, delete it by hand")
            return
        except Exception:  # noqa: BLE001 - it failed, so there is no job to delete
            return
        self._created(resource_meta)
        await self._delete(resource_meta, reason)

    def _created(self, resource_meta: bytes) -> None:
        self.result.resource_meta = resource_meta
        self.observer.created(resource_meta)
        if self.options.logs != "none":
            self._logs = _LogCursor(self, resource_meta)

    async def _follow(self, resource_meta: bytes) -> None:
        """Poll to a terminal phase, then fetch logs/metrics; delete if it did not end."""
        reason = None
        try:
            resource = await self._poll(resource_meta)
            self._finish_terminal(resource)
        except _Stopped as stop:
            reason = self.result.status = stop.args[0]
        except Exception as exc:  # noqa: BLE001
            reason = "error"
            self._fail("error", describe_failure(exc, self._where("get")), exc)
        if reason != "interrupted":
            await self._epilogue(resource_meta)
        if reason is not None:
            await self._delete(resource_meta, reason)

    def _where(self, method: str) -> str:
        """`Connector.method` for error lines ('method' when the target named none)."""
        name = getattr(self.target, "connector_name", "")
        return f"{name}.{method}" if name else method

    async def _poll(self, resource_meta: bytes) -> Resource:
        delay, last_phase, failures = self.options.poll_interval, "", 0
        while True:
            try:
                resource = await self._race(self.target.get(self.request, resource_meta))
            except _Stopped:
                raise
            except Exception as exc:
                # Like the backend: every failed get counts and the count never resets.
                failures += 1
                if failures > self.options.get_failures:
                    raise
                self.observer.note(
                    f"{describe_failure(exc, self._where('get'))}; polling again "
                    f"(failed get {failures} of {self.options.get_failures} tolerated)")
                await self._race(asyncio.sleep(delay))
                continue
            phase = phase_name(resource.phase)
            self._record(resource, phase, last_phase)
            if is_terminal_phase(resource.phase):
                return resource
            if self._logs is not None and self.options.logs == "follow":
                await self._logs.drain(self._race)
            elapsed = time.monotonic() - self._start
            delay = next_poll_delay(self.options, delay, elapsed, phase != last_phase)
            last_phase = phase
            await self._race(asyncio.sleep(delay))

    def _record(self, resource: Resource, phase: str, last_phase: str) -> None:
        result = self.result
        result.polls += 1
        result.phase, result.message = phase, resource.message
        new_links = []
        for link in resource.log_links:
            key = (link.name, link.uri)
            if key not in self._links:
                self._links.add(key)
                result.log_links.append(link)
                new_links.append(link)
        if resource.HasField("custom_info"):
            result.custom_info = MessageToDict(resource.custom_info)
        if resource.HasField("outputs"):
            result.outputs = resource.outputs
        self.observer.polled(PollUpdate(
            phase=phase, message=resource.message, polls=result.polls,
            elapsed=time.monotonic() - self._start, phase_changed=phase != last_phase,
            new_log_links=tuple(new_links),
        ))

    def _finish_terminal(self, resource: Resource) -> None:
        if resource.phase != TaskExecution.SUCCEEDED:
            status = "aborted" if resource.phase == TaskExecution.ABORTED else "failed"
            self._finish(status, resource.message)
            return
        problem = self._missing_outputs()
        self._finish("failed" if problem else "succeeded", resource.message)
        self.result.error = problem

    def _missing_outputs(self) -> Optional[str]:
        """Why Flyte would fail a SUCCEEDED task for its outputs, or None when they are fine.

        Like the Flyte backend, outputs not returned by `get` are read from
        `<output_prefix>/outputs.pb` (when the prefix is a local path). The outputs are
        also decoded against the declared types into `result.output_values`."""
        declared = {v.key: v.value.type for v in self.request.template.interface.outputs.variables}
        result = self.result
        if declared and result.outputs is None:
            result.outputs = read_outputs_file(self.request.output_prefix)
        if declared and result.outputs is None:
            return (f"SUCCEEDED without outputs: get returned none and there is no "
                    f"outputs.pb under {self.request.output_prefix}; Flyte would fail this "
                    f"task (declared outputs: {', '.join(declared)})")
        named = list(result.outputs.literals) if result.outputs is not None else []
        missing = [name for name in declared if name not in {n.name for n in named}]
        if missing:
            return (f"SUCCEEDED but output(s) {', '.join(missing)} missing; "
                    "Flyte would fail this task")
        try:
            for item in named:
                result.output_values[item.name] = literal_to_python(
                    item.value, declared.get(item.name), item.name, role="output")
        except LiteralError as exc:
            return f"SUCCEEDED but {exc}; Flyte would fail this task"
        return None

    async def _epilogue(self, resource_meta: bytes) -> None:
        """Fetch the remaining logs and the metrics, bounded, ignoring the deadline."""
        self._deadline = None
        bound = self.options.epilogue_timeout
        try:
            if self._logs is not None:
                await self._logs.drain(lambda aw: self._race(aw, bound))
            if self.options.metrics:
                await self._race(self._fetch_metrics(resource_meta), bound)
        except _Stopped:
            self.observer.note("stopped fetching logs/metrics")
        except Exception as exc:  # noqa: BLE001 - logs are a bonus, not the result
            self.observer.note(f"could not fetch logs/metrics: {_describe(exc)}")

    async def _fetch_metrics(self, resource_meta: bytes) -> None:
        try:
            response = await self.target.metrics(self.request, resource_meta, self._wall_start,
                                                 time.time())
        except Unsupported:
            self.observer.note("the connector does not implement get_metrics")
            return
        self.result.metrics = [
            {"metric": r.metric, "data": MessageToDict(r.data)} for r in response.results
        ]

    async def _delete(self, resource_meta: bytes, reason: str) -> None:
        if self.options.keep:
            self.observer.note("--keep: not deleting the job; it may still be running")
            return
        self.observer.deleting(reason)
        try:
            await self._race(self.target.delete(self.request, resource_meta),
                             self.options.delete_timeout, self._force)
        except _Stopped:
            self.result.delete_error = (
                "skipped (second interrupt)" if self._force.is_set()
                else f"no answer within {self.options.delete_timeout:g}s"
            )
        except Exception as exc:  # noqa: BLE001
            self.result.delete_error = _describe(exc)
        else:
            self.result.deleted = True
        self.observer.deleted(self.result.delete_error)

    async def _race(self, aw: Awaitable[_T], timeout: Optional[float] = None,
                    stop: Optional[asyncio.Event] = None) -> _T:
        """Await `aw` unless the stop event fires or the deadline/`timeout` passes first."""
        stop = stop or self._stop
        if stop.is_set():
            _close(aw)
            raise _Stopped(self._stop_status(stop))
        if timeout is None and self._deadline is not None:
            timeout = max(0.0, self._deadline - time.monotonic())
        task = asyncio.ensure_future(aw)
        waiter = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({task, waiter}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
        if task.done() and not task.cancelled():
            task.exception()  # retrieved so asyncio does not log it
        raise _Stopped(self._stop_status(stop) if stop.is_set() else "timed_out")

    def _stop_status(self, stop: asyncio.Event) -> str:
        return "interrupted" if stop.is_set() else "timed_out"

    def _finish(self, status: str, message: str) -> None:
        self.result.status, self.result.message = status, message

    def _fail(self, status: str, line: str, exc: BaseException) -> None:
        logger.debug("connector call failed", exc_info=exc)
        self.result.status, self.result.error, self.result.exception = status, line, exc


def next_poll_delay(options: RunOptions, current: float, elapsed: float, changed: bool) -> float:
    """The wait before the next `get`: the poll interval for the first `backoff_after`
    seconds and after every phase change, then 20% longer each poll up to the cap."""
    cap = max(options.poll_interval, options.max_poll_interval)
    if changed or elapsed < options.backoff_after:
        return options.poll_interval
    return min(cap, current * 1.2)


def read_outputs_file(output_prefix: str) -> Optional[Outputs]:
    """`<output_prefix>/outputs.pb` as `flyteidl2.task.Outputs` when it is a local file."""
    local = output_prefix.removeprefix("file://")
    if "://" in local:
        return None
    try:
        return Outputs.FromString((Path(local) / "outputs.pb").read_bytes())
    except (OSError, DecodeError):
        return None


class _LogCursor:
    """Reads log pages from where it left off, so following never repeats a line."""

    max_pages = 1000

    def __init__(self, run: Run, resource_meta: bytes) -> None:
        self.run, self.resource_meta = run, resource_meta
        self.token, self.seen = "", 0
        self.disabled = False

    async def drain(self, race: Any) -> None:
        """Emit every line not emitted yet, page by page."""
        if self.disabled:
            return
        run = self.run
        for _ in range(self.max_pages):
            try:
                lines, next_token = await race(run.target.log_page(run.request, self.resource_meta,
                                                                    self.token))
            except _Stopped:
                raise
            except Exception as exc:  # noqa: BLE001 - logs are a bonus, not the result
                self.disabled = True
                run.observer.note("the connector does not implement get_logs"
                                  if isinstance(exc, Unsupported)
                                  else f"stopped fetching logs: "
                                  f"{describe_failure(exc, run._where('get_logs'))}")
                return
            fresh = lines[self.seen:]
            if fresh:
                run.result.logs.extend(fresh)
                run.observer.log_lines(fresh)
            if not next_token or next_token == self.token:
                self.seen = len(lines)
                return
            self.token, self.seen = next_token, 0


def _close(aw: Awaitable[Any]) -> None:
    if asyncio.iscoroutine(aw):
        aw.close()


def _describe(exc: BaseException) -> str:
    """A connector's exception: its type (unless ours) and its whole message, bounded."""
    text = bounded(str(exc))
    if isinstance(exc, ConnectorError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
