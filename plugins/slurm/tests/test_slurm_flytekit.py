"""flytekit's own Slurm connector (flytekitplugins-slurm 1.16, unmodified) served by
flyte-connector against this suite's real Slurm cluster and its sshd login node, through
Flyte 1's agent API: submit (a script that succeeds, one that fails, one that runs on) and
cancel.

Polling cannot pass here, and the test pins down why: the plugin's `get` runs
`scontrol --json show job` and reads `job_state` as a list, which needs Slurm 23.02 or
later; Debian 12's Slurm (22.05, what `make slurm` installs) has neither, so every GetTask
is INTERNAL naming the failed command, as it would be under `pyflyte serve connector`.

`make test` installs flytekitplugins-slurm into .venv/flytekit-plugins (a directory only
such tests put on sys.path). The plugin's SSH settings have no port, so the login node's
port comes from an OpenSSH client config in a HOME of the test's own, as a site would
write ~/.ssh/config.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flytekit.extend.backend.base_connector", reason="needs the flytekit extra")
pytest.importorskip("flyteidl.service.agent_pb2", reason="needs the flyte1 extra")

import grpc
from flyteidl.admin import agent_pb2 as v1
from flyteidl.core import tasks_pb2
from flyteidl.service.agent_pb2_grpc import AsyncAgentServiceStub
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct
from slurm_sshd import Sshd
from slurm_testlib import squeue_ids, wait_until

from connector_cli.testing import serve_in_background

KIT_PLUGINS = Path(sys.prefix) / "flytekit-plugins"
if not (KIT_PLUGINS / "flytekitplugins" / "slurm").is_dir():
    pytest.skip("needs flytekitplugins-slurm in .venv/flytekit-plugins (make install-flyte)",
                allow_module_level=True)
LOGIN = "flyte-slurm-login"


@pytest.fixture
def ssh_home(sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME whose ~/.ssh/config names the login node; returns the client key's path."""
    monkeypatch.syspath_prepend(str(KIT_PLUGINS))
    (tmp_path / ".ssh").mkdir(mode=0o700)
    key = tmp_path / ".ssh" / "id_slurm"
    key.write_text(sshd.private_key)
    key.chmod(0o600)
    (tmp_path / ".ssh" / "config").write_text(
        f"Host {LOGIN}\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    return key


def template(key: Path, script: str) -> Any:
    custom = {"ssh_config": {"host": LOGIN, "username": "root", "client_keys": [str(key)]},
              "sbatch_config": {"job-name": "flytekit-slurm"}, "batch_script_args": [],
              "script": script, "python_input_types": {}, "output_locs": []}
    return tasks_pb2.TaskTemplate(type="slurm", custom=json_format.ParseDict(custom, Struct()))


def job_state(job_id: int) -> str:
    done = subprocess.run(["scontrol", "show", "job", str(job_id)], capture_output=True,
                          text=True, timeout=30, env=os.environ)
    match = re.search(r"JobState=(\w+)", done.stdout)
    return match.group(1) if match else ""


async def test_flytekits_slurm_connector_submits_and_cancels_on_a_real_cluster(
        ssh_home: Path, job_root: Path) -> None:
    async with serve_in_background(plugins=["flytekitplugins-slurm"], client_timeout=60) as d:
        assert ("slurm", 0) in d.registry.categories()
        async with grpc.aio.insecure_channel(d.address) as channel:
            stub = AsyncAgentServiceStub(channel)

            async def submit(script: str) -> bytes:
                response = await stub.CreateTask(v1.CreateTaskRequest(
                    template=template(ssh_home, script), output_prefix="/tmp/out"), timeout=60)
                return bytes(response.resource_meta)

            metas = [await submit("#!/bin/bash\necho hello from flytekit on slurm\n"),
                     await submit("#!/bin/bash\necho about to fail\nexit 3\n"),
                     await submit("#!/bin/bash\nsleep 300\n")]
            ok, bad, long = (int(json.loads(meta)["job_id"]) for meta in metas)
            assert await wait_until(lambda: job_state(ok) == "COMPLETED", 60), job_state(ok)
            assert await wait_until(lambda: job_state(bad) == "FAILED", 60), job_state(bad)
            assert await wait_until(lambda: long in squeue_ids(), 30)
            await stub.DeleteTask(v1.DeleteTaskRequest(
                task_category=v1.TaskCategory(name="slurm"), resource_meta=metas[2]),
                timeout=60)
            assert await wait_until(lambda: long not in squeue_ids(), 30)
            with pytest.raises(grpc.aio.AioRpcError) as polled:
                await stub.GetTask(v1.GetTaskRequest(
                    task_category=v1.TaskCategory(name="slurm"), resource_meta=metas[0]),
                    timeout=60)
    # the meta is the plugin's own JSON (its ResourceMeta encoding), ssh settings included
    assert json.loads(metas[0])["ssh_config"]["host"] == LOGIN
    assert job_state(long) == "CANCELLED"
    assert polled.value.code() == grpc.StatusCode.INTERNAL
    assert "ProcessError" in (polled.value.details() or "")
