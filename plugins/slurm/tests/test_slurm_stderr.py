"""How a job Slurm forgot (no accounting) ends: Slurm's own `*** JOB N ... CANCELLED AT ...
***` line at the end of its stderr, read from real files, then the exit-code file."""

from __future__ import annotations

from pathlib import Path

import pytest
from flyte_connector_slurm.connector import from_job_files
from flyte_connector_slurm.jobfiles import JobPaths
from flyte_connector_slurm.states import (
    STDERR_TAIL_BYTES,
    describe,
    from_stderr,
    phase_of,
)
from flyte_connector_slurm.transport import LocalTransport
from flyteidl2.core.execution_pb2 import TaskExecution

Phase = TaskExecution
AT = "2026-11-30T01:02:03"


def cancel_line(job_id: int, due_to: str = "") -> str:
    """The line slurmstepd writes, as Slurm 22-24 print it."""
    tail = f" DUE TO {due_to}" if due_to else ""
    return f"slurmstepd-node1: error: *** JOB {job_id} ON node1 CANCELLED AT {AT}{tail} ***"


@pytest.mark.parametrize("due_to, state, reason, phase", [
    ("TIME LIMIT", "TIMEOUT", "TimeLimit", Phase.FAILED),
    ("PREEMPTION", "PREEMPTED", "Preemption", Phase.RETRYABLE_FAILED),
    ("NODE FAILURE", "NODE_FAIL", "NodeFail", Phase.RETRYABLE_FAILED),
    ("NODE FAILURE, SEE SLURMCTLD LOG FOR DETAILS", "NODE_FAIL", "NodeFail",
     Phase.RETRYABLE_FAILED),
    ("JOB REQUEUE", "FAILED", "cancelled by Slurm due to JOB REQUEUE", Phase.FAILED),
    ("", "CANCELLED", f"cancelled at {AT}", Phase.ABORTED),
])
def test_slurms_cancel_line_gives_the_state(due_to: str, state: str, reason: str,
                                            phase: int) -> None:
    text = f"started\nsome output\n{cancel_line(7, due_to)}\n"
    job = from_stderr(text, 7, exit_code=143)
    assert job is not None
    assert (job.state, job.reason, job.exit_code, job.source) == (state, reason, 143, "stderr")
    assert phase_of(job) == phase


def test_only_the_jobs_own_last_line_counts() -> None:
    assert from_stderr("no slurm line here\n", 7) is None
    assert from_stderr(cancel_line(8, "TIME LIMIT"), 7) is None
    assert from_stderr(cancel_line(17, "TIME LIMIT"), 7) is None
    both = f"{cancel_line(7, 'PREEMPTION')}\nrequeued, ran again\n{cancel_line(7, 'TIME LIMIT')}"
    last = from_stderr(both, 7)
    assert last is not None and last.state == "TIMEOUT"
    assert from_stderr("*** JOB 7 ON node1 CANCELLED AT soon DUE TO TIME LIMIT", 7) is None


def write_job(root: Path, job_id: int, exit_text: str | None, stderr: str) -> JobPaths:
    paths = JobPaths(str(root), job_id)
    (root / str(job_id)).mkdir(parents=True)
    if exit_text is not None:
        Path(paths.exit_file).write_text(exit_text + "\n")
    Path(paths.stream("err")).write_text(stderr)
    return paths


async def test_a_forgotten_job_over_its_time_limit_is_a_timeout(tmp_path: Path) -> None:
    noise = "x" * 100 + "\n"
    paths = write_job(tmp_path, 5, "terminated", noise * 1000 + cancel_line(5, "TIME LIMIT"))
    job = await from_job_files(LocalTransport(), paths)
    assert describe(job) == "TIMEOUT (exit code 143, reason TimeLimit)"
    assert phase_of(job) == Phase.FAILED and job.source == "stderr"


async def test_the_line_is_looked_for_in_the_tail_only(tmp_path: Path) -> None:
    paths = write_job(tmp_path, 6, "terminated",
                      cancel_line(6, "TIME LIMIT") + "\n" + "y" * STDERR_TAIL_BYTES)
    job = await from_job_files(LocalTransport(), paths)
    assert job.state == "FAILED" and job.source == "exit-code file"
    assert "terminated by Slurm (time limit or scancel)" in job.reason


async def test_a_cancelled_job_without_an_exit_code_file_is_aborted(tmp_path: Path) -> None:
    paths = write_job(tmp_path, 9, None, cancel_line(9))
    job = await from_job_files(LocalTransport(), paths)
    assert phase_of(job) == Phase.ABORTED and job.exit_code is None
    lost = await from_job_files(LocalTransport(), write_job(tmp_path, 10, None, ""))
    assert lost.state == "LOST" and phase_of(lost) == Phase.RETRYABLE_FAILED


async def test_a_script_that_exited_on_its_own_keeps_its_exit_code(tmp_path: Path) -> None:
    paths = write_job(tmp_path, 11, "3", cancel_line(11, "TIME LIMIT"))
    job = await from_job_files(LocalTransport(), paths)
    assert (job.state, job.exit_code, job.source) == ("FAILED", 3, "exit-code file")
