"""SQLite jobs through the connector API: results, binding, failures, cancel, restarts."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from flyteidl2.core.execution_pb2 import TaskExecution
from sql_testlib import SLOW_SQLITE, Jobs, read_result, template

from connector_cli.errors import UsageError
from connector_cli.literals import StructuredDataset
from connector_cli.sdk.connector import call_method
from flyte_connector_sql import jobfiles, process
from flyte_connector_sql.connector import SQLConnector, SQLMeta

SQUARES = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :limit) "
           "SELECT i, i * i AS square, :label AS label FROM n")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE x (name TEXT, score REAL)")
        conn.executemany("INSERT INTO x VALUES (?, ?)", [("ada", 9.5), ("bob", None)])
    conn.close()
    return path


async def test_rows_are_written_as_csv_and_returned_as_a_dataset(jobs: Jobs) -> None:
    started = time.monotonic()
    meta = await jobs.create(template(query=SQUARES), {"limit": 3, "label": "sq"})
    assert time.monotonic() - started < 2
    done = await jobs.wait(meta)
    assert done.phase == TaskExecution.SUCCEEDED, done.message
    result = done.outputs["result"]
    assert done.outputs["row_count"] == 3
    assert isinstance(result, StructuredDataset) and result.format == "csv"
    assert Path(result.uri).parent.parent == jobs.prefix
    assert read_result(done).splitlines() == ["i,square,label", "1,1,sq", "2,4,sq", "3,9,sq"]


async def test_json_lines_keep_types_and_nulls(jobs: Jobs, db: Path) -> None:
    meta = await jobs.create(template(query="SELECT name, score FROM x ORDER BY name",
                                      database=str(db), format="jsonl"))
    done = await jobs.wait(meta)
    assert done.outputs["result"].format == "jsonl"
    rows = [json.loads(line) for line in read_result(done).splitlines()]
    assert rows == [{"name": "ada", "score": 9.5}, {"name": "bob", "score": None}]


async def test_an_injection_attempt_is_bound_as_plain_data(jobs: Jobs, db: Path) -> None:
    evil = "'; DROP TABLE x; --"
    insert = await jobs.create(template(query="INSERT INTO x (name) VALUES (:name)",
                                        database=str(db)), {"name": evil})
    assert (await jobs.wait(insert)).outputs["row_count"] == 1
    select = await jobs.create(template(query="SELECT count(*) AS n FROM x WHERE name = :name",
                                        database=str(db)), {"name": evil})
    done = await jobs.wait(select)
    assert read_result(done).splitlines() == ["n", "1"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM x").fetchone() == (3,)
    conn.close()


async def test_a_failing_query_is_failed_with_sqlites_message(jobs: Jobs, db: Path) -> None:
    meta = await jobs.create(template(query="SELECT * FROM missing", database=str(db)))
    done = await jobs.wait(meta)
    assert done.phase == TaskExecution.FAILED
    assert done.message == "SQLite error: no such table: missing"


async def test_a_missing_database_file_is_a_failed_job(jobs: Jobs, tmp_path: Path) -> None:
    meta = await jobs.create(template(query="SELECT 1", database=str(tmp_path / "nope.db")))
    done = await jobs.wait(meta)
    assert done.phase == TaskExecution.FAILED
    assert "unable to open database file" in done.message and "nope.db" in done.message


async def test_delete_stops_a_30s_query_quickly_and_is_idempotent(jobs: Jobs) -> None:
    meta = await jobs.create(template(query=SLOW_SQLITE))
    running = await jobs.wait_running(meta)
    assert running.message.startswith("running for")
    took = await jobs.delete(meta)
    print(f"delete of a running 30 s SQLite query took {took:.3f}s")
    assert took < 2
    assert not process.is_alive(meta.pid, meta.start_ticks)
    done = await jobs.get(meta)
    assert done.phase == TaskExecution.ABORTED
    status = jobfiles.read_json(Path(meta.job_dir) / jobfiles.STATUS)
    assert status["state"] == jobfiles.ABORTED
    assert await jobs.delete(meta) < 0.5
    assert (await jobs.get(meta)).phase == TaskExecution.ABORTED


async def test_delete_after_success_changes_nothing(jobs: Jobs) -> None:
    meta = await jobs.create(template(query="SELECT 1 AS one"))
    assert (await jobs.wait(meta)).phase == TaskExecution.SUCCEEDED
    await jobs.delete(meta)
    assert (await jobs.get(meta)).phase == TaskExecution.SUCCEEDED


async def test_a_new_connector_finds_the_job_from_the_meta_bytes_alone(jobs: Jobs) -> None:
    meta = await jobs.create(template(query=SQUARES), {"limit": 2, "label": None})
    wire = meta.encode()
    assert len(wire) < 400
    restarted = SQLConnector()
    again = SQLMeta.decode(wire)
    done = await jobs.wait(again)
    assert read_result(done).splitlines() == ["i,square,label", "1,1,", "2,4,"]
    assert (await jobs.get(again)).outputs == (await call_method(restarted, "get", again)).outputs


async def test_a_killed_worker_is_reported_as_retryable(jobs: Jobs) -> None:
    meta = await jobs.create(template(query=SLOW_SQLITE))
    await jobs.wait_running(meta)
    os.kill(meta.pid, signal.SIGKILL)
    assert process.wait_until(lambda: not process.is_alive(meta.pid, meta.start_ticks), 5)
    done = await jobs.get(meta)
    assert done.phase == TaskExecution.RETRYABLE_FAILED
    assert done.message.startswith("the SQL worker exited unexpectedly")


async def test_a_remote_output_prefix_keeps_the_job_in_the_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(jobfiles.STATE_DIR_ENV, str(tmp_path / "state"))
    runner = Jobs(tmp_path)
    runner.prefix = "s3://bucket/run/1"  # type: ignore[assignment]
    try:
        meta = await runner.create(template(query="SELECT 42 AS answer"))
        done = await runner.wait(meta)
    finally:
        runner.cleanup()
    assert Path(meta.job_dir).parent == tmp_path / "state"
    assert read_result(done).splitlines() == ["answer", "42"]


async def test_a_file_uri_prefix_gives_file_uris(jobs: Jobs, tmp_path: Path) -> None:
    jobs.prefix = f"file://{tmp_path}/uri-out"  # type: ignore[assignment]
    meta = await jobs.create(template(query="SELECT 1 AS one"))
    done = await jobs.wait(meta)
    uri = done.outputs["result"].uri
    assert uri.startswith(f"file://{tmp_path}/uri-out/sql-") and uri.endswith("/result.csv")
    assert Path(uri[len("file://"):]).read_text().splitlines() == ["one", "1"]


async def test_statements_without_rows_report_affected_rows(jobs: Jobs, db: Path) -> None:
    meta = await jobs.create(template(query="UPDATE x SET score = :s", database=str(db)),
                             {"s": 1.0})
    done = await jobs.wait(meta)
    assert done.outputs["row_count"] == 2 and read_result(done) == ""


async def test_bad_templates_fail_create_before_any_worker_starts(jobs: Jobs) -> None:
    with pytest.raises(UsageError, match="custom.format"):
        await jobs.create(template(query="SELECT 1", format="parquet"))
    assert not jobs.prefix.exists()


async def test_typed_inputs_bind_and_unused_inputs_are_ignored(jobs: Jobs) -> None:
    query = ("SELECT :when AS w, :day AS d, :span AS span, hex(:raw) AS raw, "
             "json_array_length(:ids) AS n, json_extract(:doc, '$.k') AS k")
    inputs = {"when": dt.datetime(2024, 5, 6, 7, 8, 9), "day": dt.date(2024, 1, 2),
              "span": dt.timedelta(minutes=2), "raw": b"\x01\xff", "ids": [1, 2, 3],
              "doc": {"k": "v"}, "unused": 7}
    meta = await jobs.create(template(query=query, format="jsonl"), inputs)
    done = await jobs.wait(meta)
    assert done.phase == TaskExecution.SUCCEEDED, done.message
    assert json.loads(read_result(done)) == {
        "w": "2024-05-06T07:08:09", "d": "2024-01-02", "span": 120.0, "raw": "01FF",
        "n": 3, "k": "v"}


async def test_a_placeholder_without_an_input_fails_the_job(jobs: Jobs) -> None:
    meta = await jobs.create(template(query="SELECT :missing"), {"other": 1})
    done = await jobs.wait(meta)
    assert done.phase == TaskExecution.FAILED
    assert "binding parameter :missing" in done.message


async def test_an_unusable_output_prefix_is_one_clear_line(jobs: Jobs, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    jobs.prefix = blocker  # type: ignore[assignment]
    with pytest.raises(UsageError, match="cannot create the SQL job directory .*: Not a directory"):
        await jobs.create(template(query="SELECT 1"))
