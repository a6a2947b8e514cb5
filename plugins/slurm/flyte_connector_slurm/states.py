"""Slurm job states -> Flyte phases, and the parsers for what Slurm prints about a job.

The mapping is what a Slurm admin expects: a script error, a time limit or an
out-of-memory kill fails the task for good (a retry would hit the same wall); a node or
boot failure is the cluster's fault and retryable; a cancel is an abort; a preempted or
requeued job is waiting for a node again.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Optional

from flyteidl2.core.execution_pb2 import TaskExecution

PHASES: dict[str, int] = {
    "PENDING": TaskExecution.QUEUED,
    "REQUEUED": TaskExecution.QUEUED,
    "REQUEUE_FED": TaskExecution.QUEUED,
    "REQUEUE_HOLD": TaskExecution.QUEUED,
    "RESV_DEL_HOLD": TaskExecution.QUEUED,
    "PREEMPTED": TaskExecution.QUEUED,
    "CONFIGURING": TaskExecution.INITIALIZING,
    "RUNNING": TaskExecution.RUNNING,
    "COMPLETING": TaskExecution.RUNNING,
    "SIGNALING": TaskExecution.RUNNING,
    "STAGE_OUT": TaskExecution.RUNNING,
    "RESIZING": TaskExecution.RUNNING,
    "SUSPENDED": TaskExecution.RUNNING,
    "STOPPED": TaskExecution.RUNNING,
    "COMPLETED": TaskExecution.SUCCEEDED,
    "FAILED": TaskExecution.FAILED,
    "TIMEOUT": TaskExecution.FAILED,
    "OUT_OF_MEMORY": TaskExecution.FAILED,
    "DEADLINE": TaskExecution.FAILED,
    "SPECIAL_EXIT": TaskExecution.FAILED,
    "NODE_FAIL": TaskExecution.RETRYABLE_FAILED,
    # Not a Slurm state: the connector's own, for a job neither slurmctld, sacct nor its
    # exit-code file knows (it never ran, or its node died before the job could record).
    "LOST": TaskExecution.RETRYABLE_FAILED,
    "BOOT_FAIL": TaskExecution.RETRYABLE_FAILED,
    "CANCELLED": TaskExecution.ABORTED,
    "REVOKED": TaskExecution.ABORTED,
}
ACTIVE = {name for name, phase in PHASES.items()
          if phase in (TaskExecution.QUEUED, TaskExecution.INITIALIZING, TaskExecution.RUNNING)}


@dataclasses.dataclass(frozen=True)
class JobState:
    """What Slurm says about one job, from `scontrol show job` or `sacct`."""

    state: str
    reason: str = ""
    exit_code: Optional[int] = None
    signal: int = 0
    requeue: bool = True
    stdout: str = ""
    elapsed: str = ""
    source: str = "scontrol"

    @property
    def active(self) -> bool:
        """True while the job may still run (pending, running, requeued...)."""
        return self.state in ACTIVE or self.state not in PHASES


def phase_of(job: JobState) -> int:
    """The Flyte phase of a Slurm state; an unknown state keeps the task RUNNING (never
    ending a job Slurm has not ended), and a preempted job nobody requeues is retryable."""
    if job.state == "PREEMPTED" and not job.requeue:
        return TaskExecution.RETRYABLE_FAILED
    return PHASES.get(job.state, TaskExecution.RUNNING)


def describe(job: JobState) -> str:
    """The message: state, reason and exit code, e.g. 'FAILED (exit code 3, NonZeroExitCode)'."""
    details = []
    if job.exit_code is not None and (job.exit_code or job.signal or not job.active):
        details.append(f"exit code {job.exit_code}" + (f", signal {job.signal}"
                                                        if job.signal else ""))
    if job.reason and job.reason not in ("None", "(null)"):
        details.append(f"reason {job.reason}")
    return job.state + (f" ({', '.join(details)})" if details else "")


def parse_scontrol(text: str) -> dict[str, str]:
    """`scontrol show job -o` output (KEY=VALUE pairs; values may hold spaces) as a dict."""
    fields: dict[str, str] = {}
    last = ""
    for token in text.strip().split(" "):
        key, eq, value = token.partition("=")
        if eq and key and " " not in key and (key[0].isupper() or key[0].isdigit()):
            fields[key] = value
            last = key
        elif last:
            fields[last] += " " + token
    return fields


def _exit(text: str) -> tuple[Optional[int], int]:
    code, _, sig = text.partition(":")
    try:
        return int(code), int(sig or 0)
    except ValueError:
        return None, 0


def from_scontrol(text: str) -> JobState:
    """The state of the job in `scontrol show job -o ID` output."""
    fields = parse_scontrol(text)
    code, sig = _exit(fields.get("ExitCode", ""))
    return JobState(
        state=fields.get("JobState", "UNKNOWN").split()[0],
        reason=fields.get("Reason", ""),
        exit_code=code,
        signal=sig,
        requeue=fields.get("Requeue", "1") != "0",
        stdout=fields.get("StdOut", ""),
        elapsed=fields.get("RunTime", ""),
    )


SACCT_FORMAT = "JobID,State,ExitCode,Reason,Elapsed"


def from_sacct(text: str, job_id: int) -> Optional[JobState]:
    """The allocation's line of `sacct -n -P -X -o SACCT_FORMAT -j ID`, or None."""
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) >= 5 and parts[0] == str(job_id):
            code, sig = _exit(parts[2])
            return JobState(state=parts[1].split()[0], reason=parts[3], exit_code=code,
                            signal=sig, elapsed=parts[4], source="sacct")
    return None


# What slurmstepd writes to a job's stderr when Slurm ends it, e.g.
# `slurmstepd-node1: error: *** JOB 7 ON node1 CANCELLED AT 2026-01-01T00:00:00 DUE TO TIME
# LIMIT ***`; without `DUE TO` someone ran scancel.
_CANCELLED_LINE = re.compile(
    r"\*\*\* JOB (\d+) ON (\S+) CANCELLED AT (\S+)(?: DUE TO ([A-Z][A-Z ,]*?))?"
    r"(?:, SEE SLURMCTLD LOG FOR DETAILS)? \*\*\*")
_DUE_TO: dict[str, tuple[str, str]] = {
    "TIME LIMIT": ("TIMEOUT", "TimeLimit"),
    "PREEMPTION": ("PREEMPTED", "Preemption"),
    "NODE FAILURE": ("NODE_FAIL", "NodeFail"),
    "DEADLINE": ("DEADLINE", "Deadline"),
}
STDERR_TAIL_BYTES = 4096


def from_stderr(text: str, job_id: int, exit_code: Optional[int] = None) -> Optional[JobState]:
    """The state Slurm's own last `*** JOB ID ... CANCELLED AT ... ***` line in the tail of
    the job's stderr tells, or None: for a job that left slurmctld with no accounting."""
    matches = [m for m in _CANCELLED_LINE.finditer(text) if m.group(1) == str(job_id)]
    if not matches:
        return None
    last = matches[-1]
    due_to = last.group(4)
    if due_to is None:
        return JobState("CANCELLED", reason=f"cancelled at {last.group(3)}",
                        exit_code=exit_code, source="stderr")
    state, reason = _DUE_TO.get(due_to, ("FAILED", f"cancelled by Slurm due to {due_to}"))
    return JobState(state, reason=reason, exit_code=exit_code, requeue=False, source="stderr")
