"""The task format, the rendered batch script (run by a real bash) and the state table."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from flyte_connector_slurm import script
from flyte_connector_slurm.config import load_config
from flyte_connector_slurm.spec import SshTarget, parse_custom
from flyte_connector_slurm.states import JobState, describe, from_sacct, from_scontrol, phase_of
from flyteidl2.core.execution_pb2 import TaskExecution

from connector_cli.errors import UsageError

Phase = TaskExecution


def test_options_become_single_sbatch_arguments() -> None:
    spec = parse_custom({
        "script": "true", "partition": "gpu", "time_limit": "1:30:00", "cpus": 4,
        "memory": 2048, "gpus": 1, "nodes": 1, "account": "proj-1", "qos": "high",
        "sbatch_flags": {"constraint": "a100&nvlink", "exclusive": True, "requeue": False},
        "ssh": {"host": "login1.example.org", "user": "svc"},
    }, default_name="my-task")
    assert spec.options == (
        "--job-name=my-task", "--partition=gpu", "--account=proj-1", "--qos=high",
        "--time=1:30:00", "--cpus-per-task=4", "--gpus=1", "--nodes=1", "--mem=2048M",
        "--constraint=a100&nvlink", "--exclusive")
    assert spec.ssh == SshTarget("login1.example.org", 22, "svc")


@pytest.mark.parametrize("custom, error", [
    ({"script": "true", "sbatch_flags": {"wrap": "id"}}, "sbatch flag 'wrap' is not allowed"),
    ({"script": "true", "sbatch_flags": {"export": "ALL"}}, "sbatch flag 'export' is not"),
    ({"script": "true", "sbatch_flags": {"exclusive": "yes"}}, "is a switch"),
    ({"script": "true", "sbatch_flags": {"comment": "-o /tmp/x"}}, "plain value"),
    ({"script": "true", "sbatch_flags": {"comment": "a\nb"}}, "plain value"),
    ({"script": "true", "gpus": True}, "custom.gpus must be an integer"),
    ({"script": "true", "transport": "rsh"}, "custom.transport must be 'local' or 'ssh'"),
    ({"script": "true", "ssh": {"host": "a b"}}, "custom.ssh.host"),
    ({"script": "true", "ssh": {"host": "h", "password": "x"}}, "custom.ssh must be"),
    ({"script": "true", "outputs": {"x": "/etc/passwd"}}, "outputs.x must be a relative path"),
    ({"script": "true", "job_name": "a b"}, "custom.job_name must be a name"),
    ({"script": "a\0b"}, "NUL"),
])
def test_malformed_options_are_refused(custom: dict, error: str) -> None:
    with pytest.raises(UsageError, match=error):
        parse_custom(custom)


def test_inputs_reach_the_script_as_inert_data(tmp_path: Path) -> None:
    nasty = {"a": "$(touch PWNED)", "b": "it's `touch PWNED`\n'\"\\", "n": 3, "l": [1, "x"],
             "e": ""}
    text = script.render('printf "%s|" "$FLYTE_INPUT_A" "$FLYTE_INPUT_B" "$FLYTE_INPUT_N" '
                         '"$FLYTE_INPUT_L" "$FLYTE_INPUT_E"; exit 5', nasty, str(tmp_path))
    env = {"PATH": os.environ["PATH"], "SLURM_JOB_ID": "77"}
    done = subprocess.run(["/bin/bash", "-s"], input=text, capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=30)
    assert done.returncode == 5
    assert done.stdout == "$(touch PWNED)|it's `touch PWNED`\n'\"\\|3|[1,\"x\"]||"
    assert (tmp_path / "77" / "exit_code").read_text() == "5\n"
    assert (tmp_path / "77" / "outputs").is_dir()
    assert not list(tmp_path.rglob("PWNED"))


def test_inputs_that_clash_or_carry_nul_are_refused() -> None:
    with pytest.raises(UsageError, match="both map to \\$FLYTE_INPUT_A_B"):
        script.render("true", {"a-b": 1, "a_b": 2}, "/tmp")
    with pytest.raises(UsageError, match="NUL byte"):
        script.render("true", {"a": "x\0y"}, "/tmp")


@pytest.mark.parametrize("state, phase", [
    ("PENDING", Phase.QUEUED), ("CONFIGURING", Phase.INITIALIZING),
    ("RUNNING", Phase.RUNNING), ("COMPLETING", Phase.RUNNING),
    ("COMPLETED", Phase.SUCCEEDED), ("FAILED", Phase.FAILED), ("TIMEOUT", Phase.FAILED),
    ("OUT_OF_MEMORY", Phase.FAILED), ("NODE_FAIL", Phase.RETRYABLE_FAILED),
    ("BOOT_FAIL", Phase.RETRYABLE_FAILED), ("CANCELLED", Phase.ABORTED),
    ("PREEMPTED", Phase.QUEUED), ("REQUEUED", Phase.QUEUED), ("SUSPENDED", Phase.RUNNING),
    ("SOMETHING_NEW", Phase.RUNNING),
])
def test_every_slurm_state_has_a_phase(state: str, phase: int) -> None:
    assert phase_of(JobState(state)) == phase


def test_a_preempted_job_nobody_requeues_is_retryable() -> None:
    assert phase_of(JobState("PREEMPTED", requeue=False)) == Phase.RETRYABLE_FAILED


def test_scontrol_and_sacct_lines_parse() -> None:
    line = ("JobId=12 JobName=a b UserId=root(0) JobState=FAILED Reason=NonZeroExitCode "
            "Dependency=(null) Requeue=0 ExitCode=3:0 RunTime=00:00:02 TRES=cpu=1,mem=64M "
            "StdOut=/jobs/my dir/12.out Power=")
    job = from_scontrol(line)
    assert (job.state, job.reason, job.exit_code, job.requeue) == (
        "FAILED", "NonZeroExitCode", 3, False)
    assert job.stdout == "/jobs/my dir/12.out"
    assert describe(job) == "FAILED (exit code 3, reason NonZeroExitCode)"
    sacct = from_sacct("12|CANCELLED by 0|0:15|None|00:01:02\n12.batch|CANCELLED|0:15||", 12)
    assert sacct is not None and (sacct.state, sacct.signal, sacct.source) == (
        "CANCELLED", 15, "sacct")
    assert from_sacct("", 12) is None


def test_daemon_settings_are_checked() -> None:
    assert load_config({}).transport == "local"
    assert load_config({"FLYTE_CONNECTOR_SLURM_SSH_HOST": "login"}).transport == "ssh"
    with pytest.raises(UsageError, match="JOB_ROOT must be a directory path without '%'"):
        load_config({"FLYTE_CONNECTOR_SLURM_JOB_ROOT": "/jobs/%u"})
    with pytest.raises(UsageError, match="TRANSPORT must be 'local' or 'ssh'"):
        load_config({"FLYTE_CONNECTOR_SLURM_TRANSPORT": "telnet"})
