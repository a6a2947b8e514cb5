"""PostgreSQL jobs against a real throwaway server: secrets, binding, errors, server-side cancel."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path

import pytest
from flyteidl2.core.execution_pb2 import TaskExecution
from sql_pgserver import PgServer
from sql_testlib import Jobs, all_job_text, read_result, template

from connector_cli.errors import UsageError
from flyte_connector_sql import process
from flyte_connector_sql.worker import APP_NAME_PREFIX


def secret(pg: PgServer) -> dict[str, str]:
    return {"sql_password": pg.password}


async def test_query_with_bound_params_and_the_password_from_the_secret(
    jobs: Jobs, pg: PgServer
) -> None:
    query = ("SELECT g AS n, %(label)s AS label, %(when)s::timestamptz AS at, "
             "%(doc)s ->> 'k' AS k FROM generate_series(1, %(limit)s) AS g WHERE g = ANY(%(ids)s)")
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    inputs = {"label": "x", "when": when, "doc": {"k": "v"}, "limit": 5, "ids": [2, 4, 9]}
    started = time.monotonic()
    meta = await jobs.create(template(query=query, database=pg.dsn, format="jsonl"), inputs,
                             **secret(pg))
    assert time.monotonic() - started < 3
    assert isinstance(meta.backend_pid, int) and meta.dsn == pg.dsn
    done = await jobs.wait(meta, **secret(pg))
    assert done.phase == TaskExecution.SUCCEEDED, done.message
    assert done.outputs["row_count"] == 2
    rows = [json.loads(line) for line in read_result(done).splitlines()]
    assert rows == [{"n": n, "label": "x", "at": "2024-05-06T07:08:09+00:00", "k": "v"}
                    for n in (2, 4)]


async def test_an_injection_attempt_is_bound_as_plain_data(jobs: Jobs, pg: PgServer) -> None:
    import psycopg

    with psycopg.connect(pg.dsn, password=pg.password, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS x (name text)")
    evil = "'; DROP TABLE x; --"
    meta = await jobs.create(template(query="INSERT INTO x VALUES (%(name)s)", database=pg.dsn),
                             {"name": evil}, **secret(pg))
    assert (await jobs.wait(meta, **secret(pg))).outputs["row_count"] == 1
    meta = await jobs.create(
        template(query="SELECT count(*) AS n FROM x WHERE name = %(name)s", database=pg.dsn),
        {"name": evil}, **secret(pg))
    assert read_result(await jobs.wait(meta, **secret(pg))).splitlines() == ["n", "1"]
    with psycopg.connect(pg.dsn, password=pg.password) as conn:
        assert conn.execute("SELECT to_regclass('x') IS NOT NULL").fetchone() == (True,)


async def test_a_failing_query_carries_the_databases_message(jobs: Jobs, pg: PgServer) -> None:
    meta = await jobs.create(template(query="SELECT * FROM missing", database=pg.dsn),
                             **secret(pg))
    done = await jobs.wait(meta, **secret(pg))
    assert done.phase == TaskExecution.FAILED
    assert done.message == 'PostgreSQL error 42P01: relation "missing" does not exist'


@pytest.mark.parametrize(("password", "expected"), [
    (None, "no password supplied"),
    ("wrong-password-123", 'password authentication failed for user "app"'),
])
async def test_without_the_right_secret_the_job_fails_cleanly(
    jobs: Jobs, pg: PgServer, password: str | None, expected: str
) -> None:
    kwargs = {"sql_password": password} if password else {}
    meta = await jobs.create(template(query="SELECT 1", database=pg.dsn), **kwargs)
    assert meta.backend_pid is None
    done = await jobs.wait(meta, **kwargs)
    assert done.phase == TaskExecution.FAILED and expected in done.message
    assert "wrong-password-123" not in done.message


def _activity(pg: PgServer, backend_pid: int) -> list[tuple]:
    with pg.admin() as admin:
        return admin.execute(
            "SELECT state, query, application_name FROM pg_stat_activity WHERE pid = %s",
            (backend_pid,),
        ).fetchall()


async def test_delete_cancels_the_query_on_the_server(jobs: Jobs, pg: PgServer) -> None:
    meta = await jobs.create(template(query="SELECT pg_sleep(30)", database=pg.dsn), **secret(pg))
    await jobs.wait_running(meta, **secret(pg))
    assert process.wait_until(
        lambda: _activity(pg, meta.backend_pid)[:1] == [
            ("active", "SELECT pg_sleep(30)", APP_NAME_PREFIX + f"sql-{meta.job_id}")], 5)
    took = await jobs.delete(meta, **secret(pg))
    print(f"delete of a running pg_sleep(30) took {took:.3f}s")
    assert took < 2
    assert _activity(pg, meta.backend_pid) == []
    assert not process.is_alive(meta.pid, meta.start_ticks)
    assert (await jobs.get(meta, **secret(pg))).phase == TaskExecution.ABORTED
    assert await jobs.delete(meta, **secret(pg)) < 0.5


async def test_the_password_never_leaves_the_secret(
    jobs: Jobs, pg: PgServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    messages = []
    for query in ("SELECT 1 AS one", "SELECT * FROM nowhere", "SELECT pg_sleep(30)"):
        meta = await jobs.create(template(query=query, database=pg.dsn), **secret(pg))
        assert pg.password not in meta.encode().decode()
        if "sleep" in query:
            await jobs.wait_running(meta, **secret(pg))
            await jobs.delete(meta, **secret(pg))
        messages.append((await jobs.wait(meta, **secret(pg))).message)
    assert all(pg.password not in str(m) for m in messages)
    assert pg.password not in caplog.text
    assert pg.password not in all_job_text(jobs.prefix)


def test_a_password_in_the_template_dsn_is_refused(jobs: Jobs, pg: PgServer) -> None:
    dsn = pg.dsn.replace("app@", f"app:{pg.password}@")
    with pytest.raises(UsageError) as caught:
        jobs.connector.create(template(query="SELECT 1", database=dsn), str(jobs.prefix))
    assert pg.password not in str(caught.value)
    assert not Path(jobs.prefix).exists()


async def test_delete_without_the_secret_still_cancels_through_the_worker(
    jobs: Jobs, pg: PgServer, caplog: pytest.LogCaptureFixture
) -> None:
    meta = await jobs.create(template(query="SELECT pg_sleep(30)", database=pg.dsn), **secret(pg))
    await jobs.wait_running(meta)
    assert process.wait_until(lambda: _activity(pg, meta.backend_pid)[:1] != [], 5)
    assert await jobs.delete(meta) < 2
    assert "no control connection" in caplog.text
    assert process.wait_until(lambda: _activity(pg, meta.backend_pid) == [], 1)
    assert (await jobs.get(meta)).phase == TaskExecution.ABORTED
