"""The SQL connector against hostile metas and queries (issue 15: items 1, 4, 8, 9).

Every process signalled here is one this test started; every file is under tmp_path.
"""

from __future__ import annotations

import dataclasses
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from flyteidl2.core.execution_pb2 import TaskExecution
from sql_testlib import SLOW_SQLITE, Jobs, template

from connector_cli.errors import UsageError
from flyte_connector_sql import cleanup, jobfiles, process
from flyte_connector_sql.connector import SQLMeta


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    """A process of this test leading its own session, as a worker does."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                            start_new_session=True)
    yield proc
    proc.kill()
    proc.wait(timeout=10)


def aimed_at(meta: SQLMeta, victim: subprocess.Popen[bytes], **changes: object) -> SQLMeta:
    ticks = process.start_ticks(victim.pid)
    assert ticks is not None
    return dataclasses.replace(meta, pid=victim.pid, start_ticks=ticks, **changes)


# ------------------------------------------------------------------ item 1: signals

async def test_delete_never_signals_a_process_that_is_not_the_jobs_worker(
    jobs: Jobs, victim: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    meta = await jobs.create(template(query=SLOW_SQLITE))
    await jobs.wait_running(meta)
    await jobs.delete(aimed_at(meta, victim))
    for pid in (0, 1, -1):
        await jobs.delete(dataclasses.replace(meta, pid=pid, start_ticks=0))
    time.sleep(0.2)
    assert victim.poll() is None, "a forged pid was signalled"
    assert not process.is_worker(victim.pid, process.start_ticks(victim.pid) or 0,
                                 meta.job_dir)


async def test_a_meta_naming_no_job_directory_is_refused_and_creates_nothing(
    jobs: Jobs, victim: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    meta = await jobs.create(template(query="SELECT 1"))
    await jobs.wait(meta)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for job_dir, job_id in ((str(elsewhere), meta.job_id), ("/dev", meta.job_id),
                            ("relative/sql-x", meta.job_id),
                            (meta.job_dir + "/..", meta.job_id),
                            (meta.job_dir, "../../etc")):
        try:
            forged = aimed_at(meta, victim, job_dir=job_dir, job_id=job_id)
        except ValueError:
            continue  # refused as a meta already: INVALID_ARGUMENT on the wire
        with pytest.raises(UsageError, match="names no SQL job directory"):
            await jobs.delete(forged)
        with pytest.raises(UsageError, match="names no SQL job directory"):
            await jobs.get(forged)
    time.sleep(0.2)
    assert victim.poll() is None
    assert list(elsewhere.iterdir()) == []


# ------------------------------------------------------------------ item 8: no dialling

async def test_delete_dials_nothing_named_by_the_meta_alone(jobs: Jobs) -> None:
    """A meta claiming PostgreSQL at an address of the caller's choice: the job's own
    spec says SQLite, so nothing connects, and open and closed ports look the same."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.5)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    outcomes = []
    try:
        for port in (listener.getsockname()[1], closed_port):
            meta = await jobs.create(template(query=SLOW_SQLITE))
            await jobs.wait_running(meta)
            forged = dataclasses.replace(meta, engine="postgresql", backend_pid=4242,
                                         dsn=f"postgresql://app@127.0.0.1:{port}/app")
            try:
                await jobs.delete(forged)
                outcomes.append("ok")
            except Exception as exc:  # noqa: BLE001 - compared below
                outcomes.append(f"{type(exc).__name__}: {exc}".replace(str(port), "PORT"))
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()
    assert outcomes[0] == outcomes[1], outcomes


# ------------------------------------------------------------------ item 9: SQLite scope

async def test_a_database_outside_the_roots_is_refused_even_through_a_symlink(
    jobs: Jobs, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    outside = tmp_path_factory.mktemp("outside") / "other.db"
    sqlite3.connect(outside).close()
    (tmp_path / "link.db").symlink_to(outside)
    for database in (str(outside), str(tmp_path / "link.db"), str(tmp_path / ".." / "x.db")):
        with pytest.raises(UsageError, match="FLYTE_CONNECTOR_SQL_SQLITE_ROOTS"):
            await jobs.create(template(query="SELECT 1", database=database))


def test_without_configured_roots_only_the_state_directory_is_allowed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from flyte_connector_sql.spec import sqlite_path

    monkeypatch.delenv("FLYTE_CONNECTOR_SQL_SQLITE_ROOTS")
    monkeypatch.setenv(jobfiles.STATE_DIR_ENV, str(tmp_path / "state"))
    assert sqlite_path(str(tmp_path / "state" / "app.db")) == str(tmp_path / "state" / "app.db")
    with pytest.raises(UsageError):
        sqlite_path(str(tmp_path / "app.db"))


@pytest.mark.parametrize("query", [
    "ATTACH DATABASE '{made}' AS other",
    "VACUUM INTO '{made}'",
    "SELECT 1; ATTACH '{made}' AS x",
])
async def test_queries_cannot_create_or_attach_database_files(
    jobs: Jobs, tmp_path: Path, query: str
) -> None:
    db = tmp_path / "app.db"
    sqlite3.connect(db).close()
    made = tmp_path / "made.db"
    meta = await jobs.create(template(query=query.format(made=made), database=str(db)))
    done = await jobs.wait(meta)
    assert done.phase == TaskExecution.FAILED
    assert not made.exists()


async def test_uri_characters_in_a_path_cannot_change_the_open_mode(
    jobs: Jobs, tmp_path: Path
) -> None:
    meta = await jobs.create(template(query="SELECT 1",
                                      database=str(tmp_path / "new.db?mode=rwc")))
    assert (await jobs.wait(meta)).phase == TaskExecution.FAILED
    assert not any(p.name.startswith("new.db") for p in tmp_path.iterdir())


# ------------------------------------------------------------------ item 4: job files

async def test_delete_removes_the_results_and_log_but_get_still_says_aborted(
    jobs: Jobs,
) -> None:
    meta = await jobs.create(template(query=SLOW_SQLITE))
    await jobs.wait_running(meta)
    await jobs.delete(meta)
    left = {p.name for p in Path(meta.job_dir).iterdir()}
    assert left <= {jobfiles.SPEC, jobfiles.STATUS, jobfiles.CANCELLED}, left
    assert (await jobs.get(meta)).phase == TaskExecution.ABORTED


async def test_the_sweep_removes_finished_jobs_after_the_retention_only(jobs: Jobs) -> None:
    finished = await jobs.create(template(query="SELECT 1"))
    await jobs.wait(finished)
    running = await jobs.create(template(query=SLOW_SQLITE))
    await jobs.wait_running(running)
    bases = [Path(finished.job_dir).parent]
    assert cleanup.sweep(bases, keep=3600) == 0
    assert cleanup.sweep(bases, keep=0, now=time.time() + 1) == 1
    assert not Path(finished.job_dir).exists() and Path(running.job_dir).is_dir()
    gone = await jobs.get(finished)
    assert gone.phase == TaskExecution.RETRYABLE_FAILED
    await jobs.delete(finished)


@pytest.mark.parametrize("value", ["later", "-3", "nan"])
async def test_a_bad_retention_setting_is_one_clear_error(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(cleanup.RETENTION_ENV, value)
    with pytest.raises(UsageError, match=cleanup.RETENTION_ENV):
        await jobs.create(template(query="SELECT 1"))


ENDLESS_ROWS = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
                "SELECT i, printf('%.200c', 'x') AS pad FROM n")


async def test_a_result_over_its_size_limit_fails_clearly(jobs: Jobs) -> None:
    """Issue 28, item 11: SQL had no cap on result size (279 MiB in 10 s)."""
    meta = await jobs.create(template(query=ENDLESS_ROWS, max_result_bytes=1 << 20))
    done = await jobs.wait(meta, timeout=30)
    assert done.phase == TaskExecution.FAILED
    assert "max_result_bytes (1048576 bytes)" in done.message
    assert not any(p.name.startswith("result") for p in Path(meta.job_dir).iterdir())


async def test_a_query_over_its_time_limit_fails_clearly(jobs: Jobs) -> None:
    meta = await jobs.create(template(query=SLOW_SQLITE.replace("60000000", "6000000000"),
                                      timeout_seconds=1))
    started = time.monotonic()
    done = await jobs.wait(meta, timeout=30)
    assert done.phase == TaskExecution.FAILED
    assert "ran longer than timeout_seconds (1 s)" in done.message
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("custom,env", [
    ({"max_result_bytes": 0}, {}),
    ({"timeout_seconds": 7200}, {}),
    ({"max_result_bytes": 2048}, {"FLYTE_CONNECTOR_SQL_MAX_RESULT_BYTES": "1024"}),
])
async def test_limits_above_the_hosts_cap_are_refused(
        jobs: Jobs, monkeypatch: pytest.MonkeyPatch, custom: dict, env: dict) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UsageError, match="must be a positive number up to"):
        await jobs.create(template(query="SELECT 1", **custom))
