"""The SSH transport against a real sshd on 127.0.0.1 playing the login node: the same
jobs as locally, with the key and known hosts from the connection secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flyte_connector_slurm.transport import SlurmUnavailable
from flyteidl2.core.execution_pb2 import TaskExecution
from slurm_sshd import Sshd
from slurm_testlib import Jobs, squeue_ids, wait_until

from connector_cli.errors import UsageError


def ssh_custom(sshd: Sshd, **custom: Any) -> dict[str, Any]:
    return {"transport": "ssh", "ssh": {"host": "127.0.0.1", "port": sshd.port, "user": "root"},
            **custom}


def secrets(sshd: Sshd) -> dict[str, str]:
    return {"ssh_private_key": sshd.private_key, "ssh_known_hosts": sshd.known_hosts}


async def test_a_job_runs_over_ssh(jobs: Jobs, sshd: Sshd, job_root: Path,
                                   monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    custom = ssh_custom(sshd, script='echo "via ssh: $FLYTE_INPUT_X"\n'
                        'echo 7 > "$FLYTE_OUTPUT_DIR/n"; echo 1 > "$FLYTE_OUTPUT_DIR/f"',
                        outputs={"n": "n", "f": "f"})
    meta = await jobs.create(custom, inputs={"x": "$(id)"}, outputs={"n": "int", "f": "file"},
                             **secrets(sshd))
    assert (meta.transport, meta.ssh_host, meta.ssh_port) == ("ssh", "127.0.0.1", sshd.port)
    resource = await jobs.finish(meta, **secrets(sshd))
    assert resource.phase == TaskExecution.SUCCEEDED, resource.message
    assert resource.outputs["n"] == 7
    path = f"{job_root}/{meta.job_id}/outputs/f"
    assert resource.outputs["f"].uri == f"sftp://root@127.0.0.1:{sshd.port}{path}"
    assert resource.log_links[0].uri == \
        f"sftp://root@127.0.0.1:{sshd.port}{job_root}/{meta.job_id}.out"
    with pytest.raises(UsageError, match="SSH needs the connection secrets"):
        await jobs.log_lines(meta)
    (tmp_path / "key").write_text(sshd.private_key)
    (tmp_path / "known").write_text(sshd.known_hosts)
    monkeypatch.setenv("FLYTE_CONNECTOR_SLURM_SSH_KEY_FILE", str(tmp_path / "key"))
    monkeypatch.setenv("FLYTE_CONNECTOR_SLURM_SSH_KNOWN_HOSTS_FILE", str(tmp_path / "known"))
    lines, token = await jobs.log_lines(meta)
    assert lines == ["via ssh: $(id)"] and token == ""


async def test_delete_over_ssh(jobs: Jobs, sshd: Sshd) -> None:
    meta = await jobs.create(ssh_custom(sshd, script="sleep 300"), **secrets(sshd))
    await jobs.connector.delete(meta, **secrets(sshd))
    assert await wait_until(lambda: meta.job_id not in squeue_ids(), 30)
    assert (await jobs.finish(meta, **secrets(sshd))).phase == TaskExecution.ABORTED
    await jobs.connector.delete(meta, **secrets(sshd))


async def test_an_unknown_host_key_is_refused(jobs: Jobs, sshd: Sshd) -> None:
    import asyncssh

    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    wrong = {"ssh_private_key": sshd.private_key,
             "ssh_known_hosts": f"[127.0.0.1]:{sshd.port} {other}"}
    queued = squeue_ids()
    with pytest.raises(SlurmUnavailable, match="host key is not in the known hosts"):
        await jobs.create(ssh_custom(sshd, script="true"), **wrong)
    assert squeue_ids() == queued


async def test_a_refused_key_and_missing_secrets_are_clear_errors(jobs: Jobs, sshd: Sshd) -> None:
    import asyncssh

    stranger = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    with pytest.raises(SlurmUnavailable, match="the key was refused"):
        await jobs.create(ssh_custom(sshd, script="true"), ssh_private_key=stranger,
                          ssh_known_hosts=sshd.known_hosts)
    with pytest.raises(UsageError, match="SSH needs the connection secrets 'ssh_private_key'"):
        await jobs.create(ssh_custom(sshd, script="true"))


async def test_the_daemon_settings_choose_ssh_for_every_task(
        jobs: Jobs, sshd: Sshd, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "key").write_text(sshd.private_key)
    (tmp_path / "known").write_text(sshd.known_hosts)
    for name, value in {"SSH_HOST": "127.0.0.1", "SSH_PORT": str(sshd.port), "SSH_USER": "root",
                        "SSH_KEY_FILE": str(tmp_path / "key"),
                        "SSH_KNOWN_HOSTS_FILE": str(tmp_path / "known")}.items():
        monkeypatch.setenv(f"FLYTE_CONNECTOR_SLURM_{name}", value)
    meta = await jobs.create({"script": "echo from the login node"})
    assert (meta.transport, meta.ssh_host, meta.ssh_port, meta.ssh_user) == (
        "ssh", "127.0.0.1", sshd.port, "root")
    assert (await jobs.finish(meta)).phase == TaskExecution.SUCCEEDED
    assert (await jobs.log_lines(meta))[0] == ["from the login node"]
