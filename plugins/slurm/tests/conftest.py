"""Fixtures for the Slurm plugin: a session-wide throwaway Slurm cluster, jobs submitted
early that need a minute of wall time (a time limit, aging out of slurmctld), an sshd.

The cluster starts right after collection when the run includes its tests (so the
minute-long jobs overlap the rest of the suite) and stops at the end of the session."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
from flyteidl2.core.execution_pb2 import TaskExecution
from slurm_cluster import (
    SlurmCluster,
    accounting_missing,
    missing_reason,
    start_cluster,
    unavailable,
)
from slurm_sshd import Sshd, start_sshd
from slurm_sshd import missing_reason as sshd_missing
from slurm_testlib import Jobs

SLURM_DIR = Path(__file__).resolve().parent.parent
EXAMPLES = SLURM_DIR / "examples"
JOB_ROOT_ENV = "FLYTE_CONNECTOR_SLURM_JOB_ROOT"


class _Session:
    """The cluster and the early jobs, started once per test session."""

    root: Optional[Path] = None
    cluster: Optional[SlurmCluster] = None
    early: Optional[dict[str, Any]] = None
    error: Optional[str] = None
    saved: dict[str, Optional[str]] = {}
    acct: Optional[SlurmCluster] = None
    acct_jobs: Optional[dict[str, Any]] = None
    acct_error: Optional[str] = None


def _start_cluster() -> SlurmCluster:
    if _Session.cluster is None:
        root = Path(tempfile.mkdtemp(prefix="flyte-slurm-test-"))
        _Session.root = root
        _Session.cluster = start_cluster(root / "cluster")
        _Session.saved = {key: os.environ.get(key) for key in ("SLURM_CONF", JOB_ROOT_ENV)}
        os.environ["SLURM_CONF"] = str(_Session.cluster.conf)
        os.environ[JOB_ROOT_ENV] = str(root / "jobs")
    return _Session.cluster


def _submit_early_jobs() -> dict[str, Any]:
    """Jobs checked by test_slurm_timeouts.py: one over a one-minute time limit (Slurm's
    smallest), two short ones that age out of slurmctld (MinJobAge=2) long before their
    test looks at them. Submitted as early as possible so the wait overlaps other tests."""
    if _Session.early is None:
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

        _Session.early = {"jobs": runner, **asyncio.run(submit())}
    return _Session.early


@contextlib.contextmanager
def pointed_at(cluster: SlurmCluster) -> Iterator[Path]:
    """SLURM_CONF and the job root of `cluster` in os.environ (the connector reads them at
    each call) for the duration; yields the job root."""
    job_root = cluster.root.parent / "jobs"
    saved = {key: os.environ.get(key) for key in ("SLURM_CONF", JOB_ROOT_ENV)}
    os.environ.update({"SLURM_CONF": str(cluster.conf), JOB_ROOT_ENV: str(job_root)})
    try:
        yield job_root
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _start_accounting() -> tuple[SlurmCluster, dict[str, Any]]:
    """A second cluster that keeps accounting (slurmdbd + MariaDB), with a failed and a
    cancelled job that age out of slurmctld before test_slurm_sacct.py looks at them."""
    if _Session.acct is None or _Session.acct_jobs is None:
        root = Path(tempfile.mkdtemp(prefix="flyte-slurm-acct-"))
        _Session.acct = cluster = start_cluster(root / "cluster", accounting=True)
        runner = Jobs()
        with pointed_at(cluster):
            async def submit() -> dict[str, Any]:
                failed = await runner.create({"script": "echo no >&2; exit 3"})
                cancelled = await runner.create({"script": "sleep 300"})
                deadline = time.monotonic() + 30
                while (await runner.get(cancelled)).phase != TaskExecution.RUNNING:
                    assert time.monotonic() < deadline, "the job to cancel never ran"
                    await asyncio.sleep(0.2)
                await runner.connector.delete(cancelled)
                return {"jobs": runner, "failed": failed, "cancelled": cancelled}

            _Session.acct_jobs = asyncio.run(submit())
    return _Session.acct, _Session.acct_jobs


def pytest_collection_finish(session: pytest.Session) -> None:
    """When the run includes the cluster tests, start the cluster and the minute-long jobs
    right after collection, so they run while the rest of the suite does."""
    if session.config.option.collectonly:
        return
    wanted = any("early_jobs" in getattr(item, "fixturenames", ()) for item in session.items)
    if wanted and missing_reason() is None:
        try:
            _start_cluster()
            _submit_early_jobs()
        except Exception as exc:  # noqa: BLE001 - the fixtures report it; cluster tests fail
            _Session.error = f"{type(exc).__name__}: {exc}"
    accounting = any("accounting" in getattr(item, "fixturenames", ()) for item in session.items)
    if accounting and missing_reason() is None and accounting_missing() is None:
        try:
            _start_accounting()
        except Exception as exc:  # noqa: BLE001 - reported by the accounting fixture
            _Session.acct_error = f"{type(exc).__name__}: {exc}"


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Cancel every job and stop the daemons by pid, whatever happened to the tests."""
    if _Session.acct is not None:
        _Session.acct.stop()
        shutil.rmtree(_Session.acct.root.parent, ignore_errors=True)
        _Session.acct = None
    cluster = _Session.cluster
    if cluster is None:
        return
    _Session.cluster = None
    try:
        cluster.stop()
    finally:
        for key, value in _Session.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if _Session.root is not None:
            shutil.rmtree(_Session.root, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm() -> SlurmCluster:
    """The cluster; SLURM_CONF and the connector's job root point at it for the session."""
    reason = missing_reason()
    if reason:
        unavailable(reason)
    if _Session.error:
        pytest.fail(f"the test cluster did not start: {_Session.error}", pytrace=False)
    return _start_cluster()


@pytest.fixture(scope="session")
def job_root(slurm: SlurmCluster) -> Path:
    return Path(os.environ[JOB_ROOT_ENV])


@pytest.fixture(scope="session")
def early_jobs(slurm: SlurmCluster) -> dict[str, Any]:
    """The early jobs (see `_submit_early_jobs`)."""
    return _submit_early_jobs()


@pytest.fixture
def accounting(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The accounting cluster's early jobs; SLURM_CONF and the job root point at it."""
    reason = missing_reason() or accounting_missing()
    if reason:
        unavailable(reason)
    if _Session.acct_error:
        pytest.fail(f"the accounting cluster did not start: {_Session.acct_error}",
                    pytrace=False)
    cluster, jobs = _start_accounting()
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    monkeypatch.setenv(JOB_ROOT_ENV, str(cluster.root.parent / "jobs"))
    return jobs


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
