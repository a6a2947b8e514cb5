"""Fixtures for the Slurm plugin: a session-wide throwaway Slurm cluster, jobs submitted
early that need a minute of wall time (a time limit, aging out of slurmctld), an sshd."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from slurm_cluster import SlurmCluster, missing_reason, start_cluster, unavailable
from slurm_sshd import Sshd, start_sshd
from slurm_sshd import missing_reason as sshd_missing
from slurm_testlib import Jobs

SLURM_DIR = Path(__file__).resolve().parent.parent
EXAMPLES = SLURM_DIR / "examples"
JOB_ROOT_ENV = "FLYTE_CONNECTOR_SLURM_JOB_ROOT"


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """The cluster; SLURM_CONF and the connector's job root point at it for the session."""
    reason = missing_reason()
    if reason:
        unavailable(reason)
    root = tmp_path_factory.mktemp("slurm")
    cluster = start_cluster(root / "cluster")
    saved = {key: os.environ.get(key) for key in ("SLURM_CONF", JOB_ROOT_ENV)}
    os.environ["SLURM_CONF"] = str(cluster.conf)
    os.environ[JOB_ROOT_ENV] = str(root / "jobs")
    try:
        yield cluster
    finally:
        subprocess_cancel_all(cluster)
        cluster.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def subprocess_cancel_all(cluster: SlurmCluster) -> None:
    cluster.run("scancel", "--user=root")


@pytest.fixture(scope="session")
def job_root(slurm: SlurmCluster) -> Path:
    return Path(os.environ[JOB_ROOT_ENV])


@pytest.fixture(scope="session")
def early_jobs(slurm: SlurmCluster) -> dict[str, Any]:
    """Jobs started at the first cluster test and checked by test_slurm_timeouts.py: one
    over a one-minute time limit (Slurm's smallest), two short ones that age out of
    slurmctld (MinJobAge=2) long before their test looks at them."""
    runner = Jobs()

    async def submit() -> dict[str, Any]:
        return {
            "timeout": await runner.create({"script": "echo started; sleep 300",
                                            "time_limit": 1}),
            "aged_ok": await runner.create(
                {"script": 'printf "%s" "$FLYTE_INPUT_WORD" > "$FLYTE_OUTPUT_DIR/word"',
                 "outputs": {"word": "word"}},
                inputs={"word": "aged"}, outputs={"word": "str", "exit_code": "int"}),
            "aged_fail": await runner.create({"script": "echo bad >&2; exit 4"}),
        }

    return {"jobs": runner, **asyncio.run(submit())}


@pytest.fixture
def jobs(slurm: SlurmCluster, early_jobs: dict[str, Any]) -> Iterator[Jobs]:
    """Create jobs on the cluster; every one is scancelled afterwards."""
    runner = Jobs()
    try:
        yield runner
    finally:
        runner.cleanup()


@pytest.fixture(scope="session")
def sshd(slurm: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """An sshd on 127.0.0.1 acting as the cluster's login node."""
    reason = sshd_missing()
    if reason:
        unavailable(reason)
    server = start_sshd(tmp_path_factory.mktemp("sshd"), slurm.conf)
    try:
        yield server
    finally:
        server.stop()
