"""A cluster that keeps accounting (slurmdbd on MariaDB): once slurmctld has forgotten a
job, `sacct` still tells its real end, including a cancel the exit-code file cannot see."""

from __future__ import annotations

from typing import Any

from flyteidl2.core.execution_pb2 import TaskExecution
from slurm_testlib import Jobs, scontrol_knows, wait_until


async def test_sacct_answers_for_jobs_slurmctld_has_forgotten(accounting: dict[str, Any]) -> None:
    runner: Jobs = accounting["jobs"]
    failed, cancelled = accounting["failed"], accounting["cancelled"]
    assert await wait_until(lambda: not scontrol_knows(failed.job_id)
                            and not scontrol_knows(cancelled.job_id), 100, step=1.0)
    resource = await runner.get(failed)
    assert resource.phase == TaskExecution.FAILED
    assert resource.message == "FAILED (exit code 3): no"
    assert resource.custom_info["source"] == "sacct"
    aborted = await runner.get(cancelled)
    assert aborted.phase == TaskExecution.ABORTED, aborted.message
    assert aborted.message.startswith("CANCELLED")
    assert aborted.custom_info["source"] == "sacct"
