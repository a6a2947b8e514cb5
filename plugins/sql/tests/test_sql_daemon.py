"""The SQL connector through a real daemon (gRPC, generated stubs), as Flyte calls it."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from flyteidl2.core.execution_pb2 import TaskExecution
from sql_pgserver import PgServer
from sql_testlib import SLOW_SQLITE, template

from connector_cli.client import connection
from connector_cli.errors import UsageError
from connector_cli.literals import json_to_inputs, literal_to_python
from connector_cli.sdk.connector import is_terminal_phase
from connector_cli.signing import unsigned_payload
from connector_cli.testing import serve_in_background
from flyte_connector_sql import process
from flyte_connector_sql.connector import SQLMeta

SQL = ("sql", 0)


async def poll(client: Any, meta: bytes, conn: Any = None, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        resource = await client.get(SQL, meta, connection=conn)
        if is_terminal_phase(resource.phase):
            return resource
        assert time.monotonic() < deadline, resource.message
        time.sleep(0.05)


def outputs(resource: Any) -> dict[str, Any]:
    return {lit.name: literal_to_python(lit.value) for lit in resource.outputs.literals}


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    """A meta key both daemons of a restart test share, as replicas do."""
    path = tmp_path / "meta.key"
    path.write_bytes(os.urandom(48).hex().encode())
    return str(path)


@pytest.fixture
def stop_workers() -> Any:
    metas: list[SQLMeta] = []
    yield metas
    for meta in metas:
        process.stop(meta.pid, meta.start_ticks, 0.5, job_dir=meta.job_dir)


async def test_the_plugin_serves_sql_and_binds_inputs_over_grpc(tmp_path: Path) -> None:
    query = "SELECT :who AS who, length(:who) AS n"
    inputs = json_to_inputs({"who": "'; DROP TABLE x; --"}, None)
    async with serve_in_background(plugins=["sql"]) as daemon:
        listed = await daemon.client.list_connectors()
        assert any(c.name == "SQL Connector" for c in listed)
        meta = await daemon.client.create(template(query=query), str(tmp_path), inputs)
        done = await poll(daemon.client, meta)
    assert done.phase == TaskExecution.SUCCEEDED, done.message
    result = outputs(done)
    assert result["row_count"] == 1 and result["result"].format == "csv"
    assert Path(result["result"].uri).read_text().splitlines() == [
        "who,n", "'; DROP TABLE x; --,19"]


async def test_failures_are_phases_and_bad_templates_are_invalid_argument(tmp_path: Path) -> None:
    async with serve_in_background(plugins=["sql"]) as daemon:
        meta = await daemon.client.create(template(query="SELEC 1"), str(tmp_path))
        done = await poll(daemon.client, meta)
        assert done.phase == TaskExecution.FAILED
        assert done.message == 'SQLite error: near "SELEC": syntax error'
        with pytest.raises(UsageError, match="has no query"):
            await daemon.client.create(template(database=":memory:"), str(tmp_path))


async def test_a_restarted_daemon_still_finds_and_cancels_a_sqlite_job(
    tmp_path: Path, stop_workers: list, key_file: str
) -> None:
    async with serve_in_background(plugins=["sql"], meta_key_file=key_file) as first:
        meta = await first.client.create(template(query=SLOW_SQLITE), str(tmp_path))
    decoded = SQLMeta.decode(unsigned_payload(meta))
    stop_workers.append(decoded)
    assert process.is_alive(decoded.pid, decoded.start_ticks)
    async with serve_in_background(plugins=["sql"], meta_key_file=key_file) as second:
        running = await second.client.get(SQL, meta)
        assert running.phase == TaskExecution.RUNNING
        started = time.monotonic()
        await second.client.delete(SQL, meta)
        assert time.monotonic() - started < 2
        assert (await second.client.get(SQL, meta)).phase == TaskExecution.ABORTED


async def test_a_restarted_daemon_cancels_a_postgres_query_on_the_server(
    tmp_path: Path, pg: PgServer, stop_workers: list, key_file: str
) -> None:
    conn = connection(secrets={"sql_password": pg.password})
    tmpl = template(query="SELECT pg_sleep(30)", database=pg.dsn)
    async with serve_in_background(plugins=["sql"], meta_key_file=key_file) as first:
        meta = await first.client.create(tmpl, str(tmp_path), connection=conn)
    decoded = SQLMeta.decode(unsigned_payload(meta))
    stop_workers.append(decoded)
    assert pg.password.encode() not in meta

    def active() -> bool:
        with pg.admin() as admin:
            row = admin.execute("SELECT state FROM pg_stat_activity WHERE pid = %s",
                                (decoded.backend_pid,)).fetchone()
        return row == ("active",)

    assert process.wait_until(active, 5)
    async with serve_in_background(plugins=["sql"], meta_key_file=key_file) as second:
        assert (await second.client.get(SQL, meta, connection=conn)).phase == TaskExecution.RUNNING
        started = time.monotonic()
        await second.client.delete(SQL, meta, connection=conn)
        assert time.monotonic() - started < 2
        assert not active()
        done = await second.client.get(SQL, meta, connection=conn)
        assert done.phase == TaskExecution.ABORTED
        await second.client.delete(SQL, meta, connection=conn)


async def test_postgres_results_come_back_over_grpc(tmp_path: Path, pg: PgServer) -> None:
    conn = connection(secrets={"sql_password": pg.password})
    inputs = json_to_inputs({"n": 4}, None)
    tmpl = template(query="SELECT g FROM generate_series(1, %(n)s) AS g", database=pg.dsn)
    async with serve_in_background(plugins=["sql"]) as daemon:
        meta = await daemon.client.create(tmpl, str(tmp_path), inputs, connection=conn)
        done = await poll(daemon.client, meta, conn)
    assert done.phase == TaskExecution.SUCCEEDED, done.message
    result = outputs(done)
    assert result["row_count"] == 4
    assert Path(result["result"].uri).read_text().split() == ["g", "1", "2", "3", "4"]
