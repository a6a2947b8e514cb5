"""`SlurmConnector`: run a task's script as a Slurm batch job (task type "slurm" v1).

`create` renders the batch script, pipes it to `sbatch --parsable` and returns `SlurmMeta`:
the job id, the cluster and how to reach it. `get` asks `scontrol show job`, then `sacct`
(when the cluster keeps accounting), then the exit-code file the job wrote and the reason
Slurm wrote at the end of its stderr (for a job slurmctld has forgotten). Nothing is kept
in the daemon, so a restarted daemon or another replica picks up every job.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, AsyncIterator, Optional

from flyteidl2.core.execution_pb2 import TaskExecution, TaskLog

from connector_cli import AsyncConnector, Resource, ResourceMeta, UsageError, template_custom
from flyte_connector_slurm import jobfiles, metrics, script
from flyte_connector_slurm.config import SlurmConfig, load_config
from flyte_connector_slurm.jobfiles import JobPaths
from flyte_connector_slurm.spec import SlurmSpec, SshTarget, fail, parse_custom, parse_ssh
from flyte_connector_slurm.states import (
    SACCT_FORMAT,
    STDERR_TAIL_BYTES,
    JobState,
    describe,
    from_sacct,
    from_scontrol,
    from_stderr,
    phase_of,
)
from flyte_connector_slurm.transport import (
    LocalTransport,
    SlurmUnavailable,
    SshCredentials,
    SshTransport,
    Transport,
)

log = logging.getLogger(__name__)

EXIT_CODE_OUTPUT = "exit_code"
KEY_SECRET, KNOWN_HOSTS_SECRET = "ssh_private_key", "ssh_known_hosts"
UNKNOWN_JOB = ("Invalid job id", "invalid job id")
UNREACHABLE = ("Unable to contact slurm controller", "Socket timed out",
               "Zero Bytes were transmitted")
_SIMPLE_KINDS = {1: "int", 2: "float", 3: "str", 4: "bool"}


@dataclasses.dataclass
class SlurmMeta(ResourceMeta):
    """The self-contained handle of one Slurm job."""

    job_id: int
    cluster: str
    transport: str = "local"
    ssh_host: Optional[str] = None
    ssh_port: int = 22
    ssh_user: Optional[str] = None
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)
    output_kinds: dict[str, str] = dataclasses.field(default_factory=dict)
    exit_code_output: bool = True


def open_transport(kind: str, target: Optional[SshTarget], config: SlurmConfig,
                   connection: dict[str, Any]) -> Transport:
    """The transport for one call: local commands, or SSH with the connection's key."""
    if kind == "local":
        return LocalTransport(config.command_timeout)
    if target is None:
        if not config.ssh_host:
            raise fail("transport 'ssh' needs custom.ssh.host or FLYTE_CONNECTOR_SLURM_SSH_HOST")
        target = SshTarget(config.ssh_host, config.ssh_port, config.ssh_user)
    return SshTransport(target.host, target.port, target.user, _credentials(config, connection),
                        config.command_timeout)


def _credentials(config: SlurmConfig, connection: dict[str, Any]) -> SshCredentials:
    key, known = connection.get(KEY_SECRET), connection.get(KNOWN_HOSTS_SECRET)
    try:
        if not key and config.ssh_key_file:
            key = Path(config.ssh_key_file).read_text()
        if not known and config.ssh_known_hosts_file:
            known = Path(config.ssh_known_hosts_file).read_text()
    except OSError as exc:
        raise SlurmUnavailable(f"cannot read the daemon's SSH key or known hosts file: "
                               f"{exc.strerror}") from None
    if not key or not known:
        raise fail(f"SSH needs the connection secrets {KEY_SECRET!r} and {KNOWN_HOSTS_SECRET!r} "
                   "(or FLYTE_CONNECTOR_SLURM_SSH_KEY_FILE and _SSH_KNOWN_HOSTS_FILE on the "
                   "daemon); host-key checking cannot be turned off")
    return SshCredentials(str(key), str(known))


def _meta_transport(meta: SlurmMeta, config: SlurmConfig, connection: dict[str, Any]) -> Transport:
    """The transport a job's handle names, after checking the handle (its bytes come back
    from the caller, so nothing in them is trusted unchecked)."""
    if meta.job_id <= 0 or meta.transport not in ("local", "ssh"):
        raise UsageError(f"resource_meta is not a slurm job handle (job id {meta.job_id}, "
                         f"transport {meta.transport!r})")
    target = None
    if meta.ssh_host:
        target = parse_ssh({"host": meta.ssh_host, "port": meta.ssh_port,
                            **({"user": meta.ssh_user} if meta.ssh_user else {})})
    return open_transport(meta.transport, target, config, connection)


def _output_kinds(template: Any, spec: SlurmSpec) -> tuple[dict[str, str], bool]:
    """Each custom output's kind from the interface; True when `exit_code` is returned."""
    variables = template.interface.outputs.variables if template.HasField("interface") else []
    types = {entry.key: entry.value.type for entry in variables}
    if not types:
        return dict.fromkeys(spec.outputs, "file"), True
    missing = sorted(set(spec.outputs) - set(types))
    if missing:
        raise fail(f"custom.outputs {', '.join(missing)} not in the task interface's outputs "
                   f"({', '.join(sorted(types))})")
    kinds = {}
    for name in spec.outputs:
        kind = types[name].WhichOneof("type")
        kinds[name] = "file" if kind == "blob" else _SIMPLE_KINDS.get(types[name].simple, "")
        if not kinds[name]:
            raise fail(f"output {name!r} must be an integer, float, string, boolean or file")
    return kinds, EXIT_CODE_OUTPUT in types


async def _sbatch(transport: Transport, root: str, spec: SlurmSpec, text: str) -> int:
    await transport.makedirs(root)
    argv = ["sbatch", "--parsable", "--export=NONE", f"--chdir={root}",
            f"--output={root}/%j.out", f"--error={root}/%j.err", *spec.options]
    done = await transport.run(argv, stdin=text)
    if done.returncode:
        reason = done.error_line()
        if any(text in reason for text in UNREACHABLE):
            raise SlurmUnavailable(f"sbatch could not reach slurmctld: {reason}")
        raise UsageError(f"slurm task: sbatch refused the job: {reason}")
    first = done.stdout.strip().split(";")[0]
    if not first.isdigit():
        raise SlurmUnavailable(f"sbatch printed no job id: {done.stdout.strip()[:80]!r}")
    return int(first)


async def _cluster_name(transport: Transport) -> str:
    done = await transport.run(["scontrol", "show", "config"])
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ClusterName":
            return value.strip()
    return ""


class SlurmConnector(AsyncConnector):
    """Submits batch jobs with sbatch and follows them with scontrol, sacct and job files."""

    name = "Slurm"
    task_type_name = "slurm"
    # v1: our `custom` format differs from flyteplugins-slurm's (which serves "slurm" v0),
    # so the backend never routes one's tasks to the other and one daemon serves both.
    task_type_version = 1
    metadata_type = SlurmMeta

    async def create(self, task_template: Any, output_prefix: str,
                     inputs: Optional[dict[str, Any]] = None,
                     task_execution_metadata: Any = None, **kwargs: Any) -> SlurmMeta:
        """Submit the job and return its handle; a refused submission is one clear error."""
        custom = template_custom(task_template)
        name = task_template.id.name.rsplit(".", 1)[-1] if task_template.HasField("id") else ""
        spec = parse_custom(custom, default_name=_job_name(name))
        kinds, exit_code_output = _output_kinds(task_template, spec)
        config = load_config()
        kind = spec.transport or ("ssh" if spec.ssh else config.transport)
        async with open_transport(kind, spec.ssh, config, kwargs) as transport:
            root = await jobfiles.job_root(transport, config)
            text = script.render(spec.script, inputs or {}, root)
            job_id = await _sbatch(transport, root, spec, text)
            cluster = await _cluster_name(transport)
        log.debug("submitted slurm job %d on cluster %s", job_id, cluster)
        target = spec.ssh or (SshTarget(config.ssh_host or "", config.ssh_port, config.ssh_user)
                              if kind == "ssh" else None)
        return SlurmMeta(
            job_id=job_id, cluster=cluster, transport=kind,
            ssh_host=target.host if target else None,
            ssh_port=target.port if target else 22,
            ssh_user=target.user if target else None,
            outputs=dict(spec.outputs), output_kinds=kinds, exit_code_output=exit_code_output,
        )

    async def get(self, resource_meta: SlurmMeta, **kwargs: Any) -> Resource:
        """The job's phase with state, reason and exit code in the message."""
        meta = resource_meta
        config = load_config()
        async with _meta_transport(meta, config, kwargs) as transport:
            paths = JobPaths(await jobfiles.job_root(transport, config), meta.job_id)
            job = await job_state(transport, paths)
            links = [TaskLog(name=f"slurm job {meta.job_id} {label}",
                             uri=jobfiles.file_uri(transport, paths.stream(stream)))
                     for stream, label in (("out", "stdout"), ("err", "stderr"))]
            info = {"job_id": meta.job_id, "cluster": meta.cluster, "state": job.state,
                    "source": job.source}
            phase, message = phase_of(job), describe(job)
            if phase == TaskExecution.FAILED:
                stderr = await jobfiles.tail(transport, paths.stream("err"))
                message += f": {stderr}" if stderr else ""
            if phase != TaskExecution.SUCCEEDED:
                return Resource(phase, message, links, None, info)
            values, problem = await jobfiles.read_outputs(
                transport, paths, meta.outputs, meta.output_kinds)
        if problem:
            return Resource(TaskExecution.FAILED, problem, links, None, info)
        if meta.exit_code_output:
            values[EXIT_CODE_OUTPUT] = job.exit_code or 0
        return Resource(TaskExecution.SUCCEEDED, message, links, values, info)

    async def delete(self, resource_meta: SlurmMeta, **kwargs: Any) -> None:
        """`scancel`; a finished or unknown job is not an error."""
        meta = resource_meta
        async with _meta_transport(meta, load_config(), kwargs) as transport:
            done = await transport.run(["scancel", str(meta.job_id)])
        if done.returncode and not any(text in done.stderr for text in UNKNOWN_JOB):
            raise SlurmUnavailable(f"scancel {meta.job_id} failed: {done.error_line()}")

    async def get_logs(self, resource_meta: SlurmMeta, token: str = "", lines: int = 0,
                       **kwargs: Any) -> AsyncIterator[Any]:
        """One page of stdout then stderr lines: the next-page header, then bodies."""
        from flyteidl2.connector.connector_pb2 import (
            GetTaskLogsResponse,
            GetTaskLogsResponseBody,
            GetTaskLogsResponseHeader,
        )
        from flyteidl2.logs.dataplane.payload_pb2 import LogLine, LogLineOriginator

        meta = resource_meta
        jobfiles.parse_token(token)
        config = load_config()
        async with _meta_transport(meta, config, kwargs) as transport:
            paths = JobPaths(await jobfiles.job_root(transport, config), meta.job_id)
            job = await job_state(transport, paths)
            page, next_token = await jobfiles.read_page(transport, paths, token, lines,
                                                        not job.active)
        if next_token:
            yield GetTaskLogsResponse(header=GetTaskLogsResponseHeader(token=next_token))
        for start in range(0, len(page), 500):
            body = GetTaskLogsResponseBody(lines=[
                LogLine(message=text, originator=LogLineOriginator.USER)
                for text in page[start:start + 500]])
            yield GetTaskLogsResponse(body=body)

    async def get_metrics(self, resource_meta: SlurmMeta, **kwargs: Any) -> Any:
        """CPU time and peak memory (sstat, while it runs) and elapsed time (scontrol)."""
        meta = resource_meta
        wanted = list(kwargs.get("queries") or ()) or list(metrics.METRICS)
        metrics.check(wanted)
        async with _meta_transport(meta, load_config(), kwargs) as transport:
            values = await metrics.collect(transport, meta.job_id)
        return metrics.response(wanted, values, meta.job_id)


def _job_name(task_name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "-" for c in task_name)[:100]
    return cleaned.strip(".-") or "flyte-task"


async def job_state(transport: Transport, paths: JobPaths) -> JobState:
    """scontrol for a job slurmctld still knows; else sacct; else the job's exit-code file."""
    done = await transport.run(["scontrol", "show", "job", "-o", str(paths.job_id)])
    if done.returncode == 0 and done.stdout.strip():
        job = from_scontrol(done.stdout)
        expected = paths.stream("out")
        if job.stdout and job.stdout != expected:
            raise UsageError(f"slurm job {paths.job_id} writes to {job.stdout}, not {expected}: "
                             "it was not submitted through this connector's job root")
        return job
    if not any(text in done.stderr for text in UNKNOWN_JOB):
        raise SlurmUnavailable(f"scontrol show job {paths.job_id} failed: {done.error_line()}")
    accounted = await transport.run(["sacct", "-n", "-P", "-X", "-o", SACCT_FORMAT,
                                     "-j", str(paths.job_id)])
    if accounted.returncode == 0:
        job_from_sacct = from_sacct(accounted.stdout, paths.job_id)
        if job_from_sacct is not None:
            return job_from_sacct
    return await from_job_files(transport, paths)


async def from_job_files(transport: Transport, paths: JobPaths) -> JobState:
    """A job slurmctld forgot, with no accounting: Slurm's own cancel line at the end of its
    stderr (time limit, preemption, node failure, scancel), else its exit-code file."""
    recorded = await jobfiles.read_exit(transport, paths)
    source = "exit-code file"
    if recorded is None or recorded == script.TERMINATED:
        tail = await jobfiles.tail_text(transport, paths.stream("err"), STDERR_TAIL_BYTES)
        said = from_stderr(tail, paths.job_id, 143 if recorded else None)
        if said is not None:
            return said
    if recorded is None:
        return JobState("LOST", reason="unknown to slurmctld and sacct, and no exit code in "
                        "its job directory: it never ran, or its node failed", source=source)
    if recorded == script.TERMINATED:
        return JobState("FAILED", reason="terminated by Slurm (time limit or scancel); it has "
                        "left slurmctld and there is no accounting to tell which",
                        exit_code=143, source=source)
    code = int(recorded) if recorded.isdigit() else 1
    return JobState("COMPLETED" if code == 0 else "FAILED", exit_code=code, source=source)
