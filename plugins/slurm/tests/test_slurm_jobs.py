"""The Slurm connector against the real test cluster: submit, follow, cancel, read back."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import time
from pathlib import Path

import pytest
from flyte_connector_slurm.connector import SlurmConnector, SlurmMeta
from flyte_connector_slurm.transport import SlurmUnavailable
from flyteidl2.core.execution_pb2 import TaskExecution
from slurm_cluster import NODE_CPUS, SlurmCluster, free_port
from slurm_testlib import Jobs, squeue_ids, wait_until

from connector_cli.errors import UsageError

NASTY = "$(touch PWNED) `touch PWNED` '; touch PWNED; ' \"$HOME\" \\n\nsecond line"


async def test_a_job_succeeds_with_its_outputs(jobs: Jobs, job_root: Path) -> None:
    script = (
        'echo "hello $FLYTE_INPUT_WHO"\n'
        'printf "%s" "$FLYTE_INPUT_WHO" > "$FLYTE_OUTPUT_DIR/who.txt"\n'
        'echo $((6 * 7)) > "$FLYTE_OUTPUT_DIR/answer"\n'
        'echo "$SLURM_JOB_ID" > "$FLYTE_OUTPUT_DIR/id"\n'
    )
    meta = await jobs.create(
        {"script": script, "cpus": 1, "memory": "100M", "time_limit": 5, "partition": "debug",
         "outputs": {"who": "who.txt", "answer": "answer", "id": "id"}},
        inputs={"who": NASTY},
        outputs={"exit_code": "int", "who": "file", "answer": "int", "id": "str"},
    )
    assert meta.cluster == "flytetest" and meta.transport == "local"
    resource = await jobs.finish(meta)
    assert resource.phase == TaskExecution.SUCCEEDED, resource.message
    assert resource.message == "COMPLETED (exit code 0)"
    outputs = resource.outputs
    assert outputs["exit_code"] == 0 and outputs["answer"] == 42
    assert outputs["id"] == str(meta.job_id)
    who = Path(outputs["who"].uri.removeprefix("file://"))
    assert who == job_root / str(meta.job_id) / "outputs" / "who.txt"
    assert who.read_text() == NASTY
    assert not list(job_root.rglob("PWNED")), "an input was executed by the shell"
    assert [link.name for link in resource.log_links] == [
        f"slurm job {meta.job_id} stdout", f"slurm job {meta.job_id} stderr"]
    assert resource.custom_info["job_id"] == meta.job_id
    lines, token = await jobs.log_lines(meta)
    assert lines == [f"hello {NASTY.splitlines()[0]}", NASTY.splitlines()[1]] and token == ""


async def test_a_failing_script_reports_its_exit_code_and_stderr(jobs: Jobs) -> None:
    resource = await jobs.run({"script": "echo working; echo 'disk full' >&2; exit 3"})
    assert resource.phase == TaskExecution.FAILED
    assert resource.message.startswith("FAILED (exit code 3, reason NonZeroExitCode)")
    assert resource.message.endswith(": disk full")
    assert resource.outputs is None


async def test_a_missing_declared_output_fails_the_task(jobs: Jobs) -> None:
    resource = await jobs.run({"script": "true", "outputs": {"n": "n"}}, outputs={"n": "int"})
    assert resource.phase == TaskExecution.FAILED
    assert "did not write output 'n'" in resource.message


async def test_delete_cancels_a_running_job_and_is_idempotent(jobs: Jobs) -> None:
    meta = await jobs.create({"script": "echo up; sleep 300"})
    assert await wait_until(lambda: _running(meta), 30)
    await jobs.connector.delete(meta)
    assert await wait_until(lambda: meta.job_id not in squeue_ids(), 30)
    resource = await jobs.get(meta)
    assert resource.phase == TaskExecution.ABORTED
    assert resource.message.startswith("CANCELLED")
    await jobs.connector.delete(meta)
    unknown = SlurmMeta(job_id=999999, cluster="flytetest")
    await jobs.connector.delete(unknown)
    lost = await jobs.get(unknown)
    assert lost.phase == TaskExecution.RETRYABLE_FAILED
    assert lost.message.startswith("LOST (reason unknown to slurmctld and sacct, and no exit")
    with pytest.raises(UsageError, match="not a slurm job handle"):
        await jobs.connector.delete(SlurmMeta(job_id=-1, cluster="flytetest"))


def _running(meta: SlurmMeta) -> bool:
    import subprocess

    done = subprocess.run(["squeue", "-h", "-j", str(meta.job_id), "-o", "%T"],
                          capture_output=True, text=True, timeout=30)
    return done.stdout.strip() == "RUNNING"


async def test_a_job_asking_for_more_cpus_than_the_node_has_stays_queued(jobs: Jobs) -> None:
    meta = await jobs.create({"script": "true", "cpus": NODE_CPUS + 1})
    deadline = time.monotonic() + 30
    while "PartitionConfig" not in ((await jobs.get(meta)).message or ""):
        assert time.monotonic() < deadline, "no pending reason from the scheduler"
        await asyncio.sleep(0.2)
    for _ in range(3):
        resource = await jobs.get(meta)
        assert resource.phase == TaskExecution.QUEUED
        assert resource.message == "PENDING (reason PartitionConfig)"
    await jobs.connector.delete(meta)
    assert (await jobs.finish(meta)).phase == TaskExecution.ABORTED


@pytest.mark.parametrize("custom, error", [
    ({"script": "true", "partition": "nope"},
     "sbatch refused the job: invalid partition specified: nope; "),
    ({"script": "true", "cpus": "two"}, "custom.cpus must be an integer"),
    ({"script": "true", "time_limit": "soon"}, "custom.time_limit must be minutes"),
    ({"script": "true", "sbatch_flags": {"output": "/etc/x"}}, "sbatch flag 'output' is not"),
    ({"script": "true", "sbatch_flags": {"constraint": "a; touch PWNED"}}, "plain value"),
    ({"script": "true", "partition": "debug --wrap=id"}, "custom.partition must be a name"),
    ({"script": "true", "memory": "lots"}, "custom.memory must be a size"),
    ({"script": ""}, "custom.script must be a non-empty string"),
    ({"script": "true", "colour": "red"}, "unknown field"),
])
async def test_bad_input_is_one_clear_error_and_nothing_runs(
        jobs: Jobs, job_root: Path, custom: dict, error: str) -> None:
    before = sorted(job_root.glob("*.out")) if job_root.exists() else []
    queued = squeue_ids()
    with pytest.raises(UsageError, match=error):
        await jobs.create(custom)
    assert squeue_ids() == queued
    assert (sorted(job_root.glob("*.out")) if job_root.exists() else []) == before


async def test_logs_page_through_a_running_job(jobs: Jobs, job_root: Path) -> None:
    meta = await jobs.create({"script": "seq 1 7; echo oops >&2; sleep 300"})
    stderr = job_root / f"{meta.job_id}.err"
    assert await wait_until(lambda: stderr.exists() and stderr.stat().st_size == 5, 30)
    first, token = await jobs.log_lines(meta, lines=5)
    assert first == ["1", "2", "3", "4", "5"] and token == "10:0"
    rest, token = await jobs.log_lines(meta, token=token, lines=5)
    assert rest == ["6", "7", "oops"] and token == "14:5"
    with pytest.raises(UsageError, match="was not issued"):
        await jobs.log_lines(meta, token="x")
    result = await jobs.connector.get_metrics(meta, queries=["elapsed_seconds", "cpu_seconds"])
    assert [r.metric for r in result.results] == ["elapsed_seconds", "cpu_seconds"]
    assert len(result.results[0].data["result"]) == 1
    for _ in range(75):  # sstat has numbers once jobacct_gather has sampled the batch step
        result = await jobs.connector.get_metrics(meta, queries=["max_rss_bytes"])
        if result.results[0].data["result"]:
            break
        await asyncio.sleep(0.2)
    sample = result.results[0].data["result"][0]
    assert sample["metric"]["job_id"] == str(meta.job_id)
    assert int(sample["values"][0][1]) > 100_000
    with pytest.raises(UsageError, match="unknown metric 'gpu'"):
        await jobs.connector.get_metrics(meta, queries=["gpu"])


async def test_paths_come_from_the_job_root_not_the_meta(jobs: Jobs, slurm: SlurmCluster) -> None:
    meta = await jobs.create({"script": "true", "outputs": {"x": "x"}}, outputs={"x": "file"})
    assert (await jobs.finish(meta)).phase == TaskExecution.FAILED
    forged = dataclasses.replace(meta, outputs={"x": "../../../etc/passwd"})
    with pytest.raises(UsageError, match="outputs.x must be a relative path inside"):
        await jobs.connector.get(SlurmMeta.decode(forged.encode()))
    other = slurm.run("sbatch", "--parsable", "-o", "/dev/null", "--wrap", "sleep 300")
    stranger = SlurmMeta(job_id=int(other.stdout.strip()), cluster="flytetest")
    jobs.started.append(stranger)
    with pytest.raises(UsageError, match="not submitted through this connector's job root"):
        await jobs.get(stranger)


async def test_a_missing_sbatch_is_a_clear_error(jobs: Jobs, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SlurmUnavailable, match="sbatch not found on this host's PATH"):
        await SlurmConnector().create(jobs_template(), "", {})
    assert os.environ["PATH"] == str(tmp_path)


async def test_an_unreachable_controller_is_not_a_task_error(
        jobs: Jobs, slurm: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "slurm.conf"
    conf.write_text(re.sub(r"(?m)^SlurmctldPort=.*$", f"SlurmctldPort={free_port()}",
                           slurm.conf.read_text()) + "MessageTimeout=1\n")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    with pytest.raises(SlurmUnavailable, match="sbatch could not reach slurmctld: .*Unable to "
                                               "contact slurm controller"):
        await SlurmConnector().create(jobs_template(), "", {})


def jobs_template():  # type: ignore[no-untyped-def]
    from slurm_testlib import make_template

    return make_template({"script": "true"})


async def test_the_job_does_not_get_the_daemons_environment(
        jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAEMON_SECRET", "s3cret")
    resource = await jobs.run({"script": 'echo "[${DAEMON_SECRET:-unset}]"',
                               "outputs": {}})
    assert resource.phase == TaskExecution.SUCCEEDED
    lines, _ = await jobs.log_lines(SlurmMeta(job_id=resource.custom_info["job_id"],
                                              cluster="flytetest"))
    assert lines == ["[unset]"]
