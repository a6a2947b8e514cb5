"""A PostgreSQL outage under a running query's polls: the daemon answers the job's last
phase while the status check cannot reach the server (`serve --get-error-grace`), the
task ends as it should, and past the grace the error reaches the caller."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from flyteidl2.core.execution_pb2 import TaskExecution
from sql_pgserver import PgServer, find_pg_bin, start_server, unavailable
from sql_testlib import template

from connector_cli.client import connection
from connector_cli.errors import RemoteError
from connector_cli.testing import serve_in_background

SQL = ("sql", 0)


@pytest.fixture
def own_pg() -> Iterator[PgServer]:
    """A server of this test's own: it is stopped and started again."""
    bindir = find_pg_bin()
    if bindir is None:
        unavailable("PostgreSQL is not installed; `make postgres` installs it")
    server = start_server(bindir)
    try:
        yield server
    finally:
        server.stop()


async def running(daemon: Any, meta: bytes, conn: Any) -> Any:
    """Poll until the query runs on the server (the status check then asks the server)."""
    deadline = time.monotonic() + 20
    while True:
        resource = await daemon.client.get(SQL, meta, connection=conn)
        if resource.phase == TaskExecution.RUNNING and "server: active" in resource.message:
            return resource
        assert time.monotonic() < deadline, resource.message
        time.sleep(0.1)


async def test_polls_during_an_outage_are_answered_and_the_task_ends_well(
        tmp_path: Path, own_pg: PgServer) -> None:
    conn = connection(secrets={"sql_password": own_pg.password})
    query = template(query="SELECT 42 AS answer FROM pg_sleep(4)", database=own_pg.dsn)
    answers = []
    async with serve_in_background(plugins=["sql"], get_error_grace=60.0) as daemon:
        meta = await daemon.client.create(query, str(tmp_path), connection=conn)
        first = await running(daemon, meta, conn)
        own_pg.refuse_new_connections()  # the running query's session goes on
        while True:
            resource = await daemon.client.get(SQL, meta, connection=conn)
            answers.append(resource)
            if resource.phase == TaskExecution.SUCCEEDED:
                break
            time.sleep(0.3)
        own_pg.wait_stopped()
        own_pg.resume()
        after = await daemon.client.get(SQL, meta, connection=conn)
    shielded = [a for a in answers if "status check failing since" in a.message]
    assert "server: active, waiting on Timeout:PgSleep" in first.message
    assert len(shielded) >= 3, [a.message for a in answers]
    assert all(a.phase == TaskExecution.RUNNING for a in shielded)
    assert "cannot reach the PostgreSQL server" in shielded[0].message
    assert own_pg.password not in " ".join(a.message for a in answers)
    assert answers[-1].phase == after.phase == TaskExecution.SUCCEEDED
    assert after.outputs.literals[0].name == "row_count"


async def test_past_the_grace_the_error_reaches_the_caller(
        tmp_path: Path, own_pg: PgServer) -> None:
    conn = connection(secrets={"sql_password": own_pg.password})
    query = template(query="SELECT 1 FROM pg_sleep(5)", database=own_pg.dsn)
    async with serve_in_background(plugins=["sql"], get_error_grace=1.0) as daemon:
        meta = await daemon.client.create(query, str(tmp_path), connection=conn)
        await running(daemon, meta, conn)
        own_pg.refuse_new_connections()
        shielded = await daemon.client.get(SQL, meta, connection=conn)
        time.sleep(1.3)
        with pytest.raises(RemoteError) as failed:
            await daemon.client.get(SQL, meta, connection=conn)
    assert shielded.phase == TaskExecution.RUNNING
    assert failed.value.code == "UNAVAILABLE"
    assert "cannot reach the PostgreSQL server" in str(failed.value)
    assert own_pg.password not in str(failed.value)


async def test_the_log_link_comes_with_the_first_answer(tmp_path: Path) -> None:
    """The backend shows a poll's links only when the phase changes: a link first sent
    mid-RUNNING would stay hidden until the task ends."""
    from sql_testlib import SLOW_SQLITE

    async with serve_in_background(plugins=["sql"]) as daemon:
        meta = await daemon.client.create(template(query=SLOW_SQLITE), str(tmp_path))
        first = await daemon.client.get(SQL, meta)
        await daemon.client.delete(SQL, meta)
    assert first.phase in (TaskExecution.INITIALIZING, TaskExecution.RUNNING)
    assert [link.name for link in first.log_links] == ["SQL worker log"]
    assert first.log_links[0].uri.startswith("file://") and \
        first.log_links[0].uri.endswith("/worker.log")


async def test_delete_cancels_the_query_on_the_server_for_a_job_under_the_output_prefix(
        tmp_path: Path, own_pg: PgServer) -> None:
    """The worker names its session after the job directory (`sql-<id>` under a local
    output prefix): the daemon's cancel must match that name. The worker is frozen first,
    so its own cancel on SIGTERM cannot stand in for the daemon's."""
    import json
    import os
    import signal

    from connector_cli.signing import unsigned_payload

    conn = connection(secrets={"sql_password": own_pg.password})
    query = template(query="SELECT 1 FROM pg_sleep(30)", database=own_pg.dsn)
    async with serve_in_background(plugins=["sql"]) as daemon:
        meta = await daemon.client.create(query, str(tmp_path), connection=conn)
        await running(daemon, meta, conn)
        worker = json.loads(unsigned_payload(meta))["pid"]
        os.kill(worker, signal.SIGSTOP)
        try:
            await daemon.client.delete(SQL, meta, connection=conn)
        finally:
            try:
                os.kill(worker, signal.SIGCONT)
            except ProcessLookupError:
                pass
    log = (own_pg.root / "server.log").read_text(errors="replace")
    assert "canceling statement due to user request" in log
