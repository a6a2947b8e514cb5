"""Issue 28, item 6: as PID 1 (a container's entrypoint) the daemon must reap orphans.

The daemon runs under `unshare --pid --fork --mount-proc`, so it is PID 1 of a new PID
namespace, as in a container without an init. Each job leaves a background child; on
delete that child is killed after its parent, so it ends re-parented to PID 1. Before
the fix, 20 deletes left 20 zombies.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_template, wait_for

from connector_cli.client import ConnectorClient
from tests.conftest import REPO, cli_env
from tests.helpers.daemon_process import read_address

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                       reason="needs root and unshare for a PID namespace"),
]
SHELL = ("shell", 0)


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def zombies_under(pid: int) -> int:
    count = 0
    for child in children(pid):
        try:
            raw = Path(f"/proc/{child}/stat").read_bytes()
        except OSError:
            continue
        count += raw[raw.rindex(b")") + 2:].split()[0] == b"Z"
    return count


async def test_the_daemon_as_pid_1_reaps_the_orphans_of_deleted_jobs(tmp_path: Path) -> None:
    env = cli_env(FLYTE_CONNECTOR_SHELL_STATE_DIR=str(tmp_path / "state"),
                  FLYTE_CONNECTOR_METRICS_PORT="0", FLYTE_CONNECTOR_STATE_DIR=str(tmp_path))
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "connector_cli",
         "serve", "--host", "127.0.0.1", "--port", "0", "--plugins", "shell"],
        stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    seen: list[str] = []
    init = 0
    try:
        assert proc.stderr is not None
        address = read_address(proc.stderr, 30, seen)
        assert address, "".join(seen)
        init = children(proc.pid)[0]  # PID 1 of the namespace
        assert Path(f"/proc/{init}/status").read_text().count("NSpid:\t") == 1
        template = make_template({"script": "sh -c 'trap \"\" TERM; sleep 300' & sleep 300",
                                  "kill_grace_seconds": 0.2})
        async with ConnectorClient(address) as client:
            metas = [await client.create(template, str(tmp_path / "out")) for _ in range(20)]
            await asyncio.sleep(0.5)
            for meta in metas:
                await client.delete(SHELL, meta)
        settled = wait_for(lambda: zombies_under(init) == 0, timeout=5)
        left = zombies_under(init)
    finally:
        os.kill(init or proc.pid, signal.SIGTERM)  # unshare does not forward it
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    assert settled, f"{left} zombies under PID 1 after 20 deletes"
    assert proc.returncode == 0, "".join(seen)
