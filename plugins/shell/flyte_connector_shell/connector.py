"""`ShellConnector`: run a command as a detached job on the connector host (task type "shell").

`create` starts `wrapper.py` in a new session and returns at once. Everything later calls
need travels in `ShellMeta` (PID, start-time fingerprint, boot id, job directory, the
job's nonce), and the wrapper records the exit code in the job directory, so `get`,
`delete`, `get_logs` and `get_metrics` work from any daemon process on this host,
including after a restart. The daemon signs the meta (`sign_resource_meta`); the
connector still checks it against the job directory before using it (`jobdir`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, AsyncIterator, Optional

from flyteidl2.core.execution_pb2 import TaskExecution, TaskLog

from connector_cli import AsyncConnector, Resource, ResourceMeta, UsageError, template_custom
from connector_cli.sdk.resource_meta import check_meta_path
from flyte_connector_shell import cgroups, jobdir, logs, metrics, procfs, wrapper
from flyte_connector_shell.metrics import METRICS
from flyte_connector_shell.spec import (
    ShellSpec,
    check_exec,
    command_env,
    parse_custom,
    render_argv,
)

log = logging.getLogger(__name__)

STATE_DIR_ENV = jobdir.STATE_DIR_ENV
DELETED_MARK = jobdir.DELETED_MARK
EXIT_CODE_OUTPUT = "exit_code"


@dataclasses.dataclass
class ShellMeta(ResourceMeta):
    """The self-contained handle of one shell job."""

    pid: int
    start_ticks: int
    boot_id: str
    job_dir: str
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)
    exit_code_output: bool = True
    grace: float = 1.0
    nonce: str = ""
    cgroup: str = ""

    def __post_init__(self) -> None:
        """Refuse job paths no job of ours has (the daemon answers INVALID_ARGUMENT)."""
        check_meta_path(self.job_dir, "job_dir")
        if self.cgroup:
            check_meta_path(self.cgroup, "cgroup")
        for name, relative in self.outputs.items():
            check_meta_path(relative, f"output {name[:40]!r}", absolute=False)

    @property
    def path(self) -> Path:
        return Path(self.job_dir)

    @property
    def output_dir(self) -> Path:
        return self.path / "outputs"

    def directory(self) -> Optional[Path]:
        """The checked job directory (None once removed); `UsageError` for one that is
        not this job's."""
        return jobdir.checked(self.job_dir, self.nonce)

    def running(self) -> bool:
        """True while the wrapper (the fingerprinted, marked session leader) is alive."""
        return procfs.is_running(self.pid, self.start_ticks, self.boot_id, self.nonce)

    def exit_record(self) -> Optional[dict[str, Any]]:
        """What the wrapper recorded when the command ended, or None while it runs."""
        try:
            fd = os.open(self.path / wrapper.EXIT_FILE, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd) as handle:
                record = json.loads(handle.read(64 * 1024))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and "exit_code" in record else None

    def bounded_grace(self) -> float:
        """The meta's kill grace, bounded to `procfs.MAX_GRACE` (NaN and negatives: default)."""
        return min(self.grace, procfs.MAX_GRACE) if self.grace >= 0 else procfs.DEFAULT_GRACE

    def ask_to_stop(self) -> None:
        """SIGTERM every process of the job (its cgroup's and those the scan finds)."""
        group = cgroups.checked(self.cgroup)
        if group is not None:
            cgroups.signal_members(group, signal.SIGTERM)
        procfs.signal_all(self._scan(), signal.SIGTERM)

    def alive(self) -> bool:
        """True while any process of the job lives."""
        group = cgroups.checked(self.cgroup)
        return bool((group is not None and cgroups.members(group)) or self._scan())

    def _scan(self) -> list[procfs.ProcStat]:
        return procfs.job_processes(self.pid, self.start_ticks, self.boot_id, nonce=self.nonce)

    def terminate(self, grace: Optional[float] = None) -> int:
        """Signal the job's processes, SIGKILL what is left after `grace` (default: the
        meta's, bounded): every process in its cgroup when it has one, and those the
        process scan finds; how many needed SIGKILL."""
        grace = self.bounded_grace() if grace is None else grace
        group = cgroups.checked(self.cgroup)
        killed = cgroups.terminate(group, grace) if group is not None else 0
        return killed + procfs.terminate(self.pid, self.start_ticks, self.boot_id,
                                         0.0 if group is not None else grace, nonce=self.nonce)


def _declared_outputs(template: Any, spec: ShellSpec) -> bool:
    """Check file outputs against the interface; True when `exit_code` is an output."""
    variables = template.interface.outputs.variables if template.HasField("interface") else []
    names = {entry.key for entry in variables}
    if not names:
        return True
    missing = sorted(set(spec.outputs) - names)
    if missing:
        raise UsageError(
            f"shell task: custom.outputs {', '.join(missing)} not in the task interface's outputs "
            f"({', '.join(sorted(names))})"
        )
    return EXIT_CODE_OUTPUT in names


class ShellConnector(AsyncConnector):
    """Runs a command or /bin/sh script as a detached local job."""

    name = "Shell"
    task_type_name = "shell"
    metadata_type = ShellMeta
    sign_resource_meta = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._children: set[int] = set()
        self._sweeper = jobdir.sweeper()
        self._cgroups_swept = -cgroups.SWEEP_EVERY  # the first create sweeps
        log.info("shell jobs are tracked by %s", cgroups.mode())

    def create(
        self,
        task_template: Any,
        output_prefix: str,
        inputs: Optional[dict[str, Any]] = None,
        task_execution_metadata: Any = None,
        **kwargs: Any,
    ) -> ShellMeta:
        """Start the command in its own session and return at once."""
        custom = template_custom(task_template)
        spec = parse_custom(custom)
        exit_code_output = _declared_outputs(task_template, spec)
        inputs = inputs or {}
        argv = render_argv(spec, inputs)
        metadata = task_execution_metadata
        job_env = dict(metadata.environment_variables) if metadata else {}
        env = command_env(spec, inputs, {}, job_env, connection=kwargs)
        check_exec(argv, env)
        jobdir.check_workdir(spec.workdir)
        self._sweeper.maybe_sweep()  # a bad retention setting is reported before a job starts
        if time.monotonic() - self._cgroups_swept >= cgroups.SWEEP_EVERY:
            self._cgroups_swept = time.monotonic()
            cgroups.sweep()
        base = jobdir.job_base(output_prefix)
        job_dir, nonce = jobdir.make(base)
        self._sweeper.remember(base)
        cgroup = cgroups.make(nonce)
        try:
            env.update(FLYTE_OUTPUT_DIR=str(job_dir / "outputs"), FLYTE_JOB_DIR=str(job_dir))
            env[procfs.MARKER_ENV] = nonce
            workdir = jobdir.workdir(spec.workdir, job_dir)
            job_spec = {"argv": argv, "cwd": str(workdir), "cgroup": cgroup}
            wrapper.write_atomically(job_dir / wrapper.SPEC_FILE, job_spec)
            pid = self._spawn(job_dir, env)
            procfs.wait_marked(pid, nonce)
        except BaseException:
            shutil.rmtree(job_dir, ignore_errors=True)
            if cgroup:
                cgroups.remove(Path(cgroup))
            raise
        stat = procfs.read_stat(pid)
        if stat is None:
            raise RuntimeError(f"the shell job wrapper (pid {pid}) vanished at start")
        log.debug("started shell job pid %d in %s", pid, job_dir)
        return ShellMeta(
            pid=pid,
            start_ticks=stat.start_ticks,
            boot_id=procfs.boot_id(),
            job_dir=str(job_dir.absolute()),
            outputs=dict(spec.outputs),
            exit_code_output=exit_code_output,
            grace=spec.grace,
            nonce=nonce,
            cgroup=cgroup,
        )

    def _spawn(self, job_dir: Path, env: dict[str, str]) -> int:
        """Start the wrapper as a session leader; posix_spawn keeps no Popen to warn about."""
        fds = {
            0: (os.devnull, os.O_RDONLY),
            1: (job_dir / "stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            2: (job_dir / "stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        }
        actions = [
            (os.POSIX_SPAWN_OPEN, fd, str(path), flags, 0o644) for fd, (path, flags) in fds.items()
        ]
        argv = [sys.executable, "-I", wrapper.__file__, str(job_dir)]
        with self._lock:
            self._reap()
            pid = os.posix_spawn(sys.executable, argv, env, file_actions=actions, setsid=True)
            self._children.add(pid)
        return pid

    def _reap(self) -> None:
        """Collect wrappers this process started that have ended, so none stays a zombie."""
        for pid in list(self._children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self._children.discard(pid)

    def get(self, resource_meta: ShellMeta, **kwargs: Any) -> Resource:
        """RUNNING until the exit record appears; then SUCCEEDED, FAILED or ABORTED."""
        meta = resource_meta
        try:
            job_dir = meta.directory()
        except jobdir.ControlFilesGone as exc:
            meta.terminate()  # the backend never deletes a FAILED task: stop it here
            return Resource(TaskExecution.FAILED, f"{exc}; its processes were stopped")
        links = [
            TaskLog(name="stdout", uri=(meta.path / "stdout").as_uri()),
            TaskLog(name="stderr", uri=(meta.path / "stderr").as_uri()),
        ]
        info: dict[str, Any] = {"pid": meta.pid, "job_dir": meta.job_dir}
        if job_dir is None:
            return Resource(TaskExecution.RETRYABLE_FAILED, _lost_message(meta, False), links,
                            None, info)
        record = meta.exit_record()
        if record is None and meta.running():
            return Resource(TaskExecution.RUNNING, f"running as pid {meta.pid}", links, None, info)
        record = record or meta.exit_record()
        deleted = os.path.lexists(job_dir / DELETED_MARK)
        if record is None:
            # Lost, not failed: the host or daemon restarted, or something killed it; the
            # command may well succeed when Flyte retries the task.
            phase = TaskExecution.ABORTED if deleted else TaskExecution.RETRYABLE_FAILED
            return Resource(phase, _lost_message(meta, deleted), links, None, info)
        info["exit_code"] = record["exit_code"]
        group = cgroups.checked(meta.cgroup)
        if group is not None:
            cgroups.remove(group, wait=0)  # ended: an empty cgroup goes (a busy one stays)
        if deleted:
            message = f"deleted ({_ending(record)})"
            return Resource(TaskExecution.ABORTED, message, links, None, info)
        if record["exit_code"] != 0:
            stderr = logs.tail(meta.path / "stderr")
            message = _ending(record) + (f": {stderr}" if stderr else "")
            return Resource(TaskExecution.FAILED, message, links, None, info)
        outputs, missing = self._outputs(meta, record)
        if missing:
            return Resource(TaskExecution.FAILED, missing, links, None, info)
        return Resource(TaskExecution.SUCCEEDED, "exit code 0", links, outputs, info)

    def _outputs(self, meta: ShellMeta, record: dict[str, Any]) -> tuple[dict[str, Any], str]:
        from connector_cli.literals import FlyteFile

        outputs: dict[str, Any] = {}
        if meta.exit_code_output:
            outputs[EXIT_CODE_OUTPUT] = record["exit_code"]
        for name, relative in meta.outputs.items():
            path = jobdir.inside(meta.output_dir, relative)
            if path is None or not path.is_file():
                return {}, (
                    f"the command exited 0 but did not write output {name!r} "
                    f"($FLYTE_OUTPUT_DIR/{relative})"
                )
            outputs[name] = FlyteFile(uri=str(path))
        return outputs, ""

    async def delete(self, resource_meta: ShellMeta, **kwargs: Any) -> None:
        """Terminate the job's whole process tree, then remove its files (a tombstone
        stays); finished, removed and already-deleted jobs are fine. The grace between
        SIGTERM and SIGKILL is awaited on the event loop, not on a worker thread: 96
        deletes of jobs that ignore SIGTERM held the daemon's pool for their grace."""
        meta = resource_meta
        job_dir = await asyncio.to_thread(self._start_delete, meta)
        if job_dir is None:
            return
        deadline = time.monotonic() + meta.bounded_grace()
        while time.monotonic() < deadline and await asyncio.to_thread(meta.alive):
            await asyncio.sleep(0.05)
        await asyncio.to_thread(self._finish_delete, meta, job_dir)

    def _start_delete(self, meta: ShellMeta) -> Optional[Path]:
        """Mark the job deleted and SIGTERM its processes; its directory (None: nothing
        more to do)."""
        try:
            job_dir = meta.directory()
        except jobdir.ControlFilesGone:
            meta.terminate()
            return None
        if job_dir is None:
            return None
        if meta.exit_record() is None and meta.running():
            (job_dir / DELETED_MARK).touch()
        meta.ask_to_stop()
        return job_dir

    def _finish_delete(self, meta: ShellMeta, job_dir: Path) -> None:
        """SIGKILL what is left, reap, remove the cgroup and the job's files."""
        killed = meta.terminate(grace=0.0)
        if killed:
            log.info("shell job pid %d: killed %d process(es) that ignored SIGTERM",
                     meta.pid, killed)
        with self._lock:
            self._reap()
        group = cgroups.checked(meta.cgroup)
        if group is not None:
            cgroups.remove(group)  # the wrapper is reaped now
        if os.path.lexists(job_dir / DELETED_MARK):
            jobdir.discard(job_dir)

    async def get_logs(
        self, resource_meta: ShellMeta, token: str = "", lines: int = 0, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """One page of stdout then stderr lines: the next-page header, then bodies."""
        from flyteidl2.connector.connector_pb2 import (
            GetTaskLogsResponse,
            GetTaskLogsResponseBody,
            GetTaskLogsResponseHeader,
        )
        from flyteidl2.logs.dataplane.payload_pb2 import LogLine, LogLineOriginator

        meta = resource_meta
        job_dir = await asyncio.to_thread(meta.directory)
        if job_dir is None:
            raise UsageError(f"shell job {meta.pid}: its job directory has been removed")
        finished = meta.exit_record() is not None or not meta.running()
        page = await asyncio.to_thread(logs.read_page, job_dir, token, lines, finished)
        if page.next_token:
            yield GetTaskLogsResponse(header=GetTaskLogsResponseHeader(token=page.next_token))
        for start in range(0, len(page.lines), 500):
            chunk = page.lines[start : start + 500]
            body = GetTaskLogsResponseBody(
                lines=[
                    LogLine(message=text, originator=LogLineOriginator.USER) for _, text in chunk
                ]
            )
            yield GetTaskLogsResponse(body=body)

    def get_metrics(self, resource_meta: ShellMeta, **kwargs: Any) -> Any:
        """CPU time and memory of the job's process tree (live), or its totals once ended."""
        from flyteidl2.connector.connector_pb2 import GetTaskMetricsResponse

        meta = resource_meta
        wanted = list(kwargs.get("queries") or ()) or list(METRICS)
        unknown = [q for q in wanted if q not in METRICS]
        if unknown:
            raise UsageError(
                f"shell task: unknown metric {unknown[0]!r}; known: {', '.join(METRICS)}"
            )
        if meta.directory() is None:
            values: dict[str, float] = {}
        else:
            values = metrics.metric_values(meta)
        now = time.time()
        results = [metrics.metric(name, meta, values.get(name), now) for name in wanted]
        return GetTaskMetricsResponse(results=results)


def _ending(record: dict[str, Any]) -> str:
    if record.get("signal"):
        return f"exit code {record['exit_code']} (killed by {record['signal']})"
    return f"exit code {record['exit_code']}"


def _lost_message(meta: ShellMeta, deleted: bool) -> str:
    if deleted:
        return "deleted"
    if not meta.path.is_dir():
        return f"job directory {meta.job_dir} is gone"
    return (
        f"the job (pid {meta.pid}) ended without recording an exit code: it was killed, "
        "or the host restarted"
    )
