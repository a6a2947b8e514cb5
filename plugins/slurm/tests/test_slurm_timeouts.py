"""Jobs that need wall time, submitted when the cluster started (`early_jobs`): a job over
its time limit, and jobs slurmctld has forgotten (no accounting, older than MinJobAge)
whose outcome comes from the exit-code file the job wrote."""

from __future__ import annotations

from typing import Any

from flyteidl2.core.execution_pb2 import TaskExecution
from slurm_testlib import Jobs, scontrol_knows, wait_until


async def test_a_job_over_its_time_limit_is_failed_with_timeout(
        early_jobs: dict[str, Any], jobs: Jobs) -> None:
    meta = early_jobs["timeout"]
    resource = await early_jobs["jobs"].finish(meta, timeout=110)
    assert resource.phase == TaskExecution.FAILED
    assert resource.message.startswith("TIMEOUT (exit code 143, reason TimeLimit): "), \
        resource.message
    lines, _ = await jobs.log_lines(meta)
    assert lines[0] == "started"
    assert "DUE TO TIME LIMIT" in lines[-1]
    assert "DUE TO TIME LIMIT" in resource.message


async def test_jobs_slurmctld_has_forgotten_end_from_their_exit_code_file(
        early_jobs: dict[str, Any]) -> None:
    runner: Jobs = early_jobs["jobs"]
    ok, bad = early_jobs["aged_ok"], early_jobs["aged_fail"]
    assert await wait_until(lambda: not scontrol_knows(ok.job_id)
                            and not scontrol_knows(bad.job_id), 100, step=1.0)
    resource = await runner.get(ok)
    assert resource.phase == TaskExecution.SUCCEEDED, resource.message
    assert resource.outputs == {"word": "aged", "exit_code": 0}
    assert resource.custom_info["source"] == "exit-code file"
    failed = await runner.get(bad)
    assert failed.phase == TaskExecution.FAILED
    assert failed.message == "FAILED (exit code 4): bad"


async def test_a_timed_out_job_slurmctld_has_forgotten_is_still_failed(
        early_jobs: dict[str, Any]) -> None:
    meta = early_jobs["timeout"]
    runner: Jobs = early_jobs["jobs"]
    assert await wait_until(lambda: not scontrol_knows(meta.job_id), 100, step=1.0)
    resource = await runner.get(meta)
    assert resource.phase == TaskExecution.FAILED
    # No accounting: the reason is Slurm's own line at the end of the job's stderr.
    assert resource.message.startswith("TIMEOUT (exit code 143, reason TimeLimit): "), \
        resource.message
    assert "DUE TO TIME LIMIT" in resource.message
    assert resource.custom_info["source"] == "stderr"
