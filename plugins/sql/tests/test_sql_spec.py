"""Template validation and parameter encoding: bad tasks fail in `create` with one clear line."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from flyteidl2.core.tasks_pb2 import Sql, TaskTemplate
from sql_testlib import template

from connector_cli.errors import UsageError
from connector_cli.literals import StructuredDataset
from flyte_connector_sql.spec import (
    POSTGRESQL,
    SQLITE,
    JsonValue,
    decode_params,
    encode_params,
    parse_template,
)


def test_sqlite_is_the_default_engine_and_paths_become_absolute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLYTE_CONNECTOR_SQL_SQLITE_ROOTS", os.pathsep.join([os.getcwd(), "/x"]))
    assert parse_template(template(query="SELECT 1")).target == ":memory:"
    spec = parse_template(template(query="SELECT 1", database="data/app.db", format="jsonl"))
    assert (spec.engine, spec.format) == (SQLITE, "jsonl")
    assert spec.target == os.path.abspath("data/app.db")
    spec = parse_template(template(query="SELECT 1", database="sqlite:///x/y.db"))
    assert spec.target == "/x/y.db"


def test_postgresql_dsn_and_query_from_the_sql_field() -> None:
    tmpl = TaskTemplate(type="sql", sql=Sql(statement="SELECT 2"))
    tmpl.custom.update({"database": "postgresql://app@127.0.0.1:5432/app",
                        "secrets": {"sql_password": "db-password"}})
    spec = parse_template(tmpl)
    assert (spec.engine, spec.query, spec.target) == (
        POSTGRESQL, "SELECT 2", "postgresql://app@127.0.0.1:5432/app")


@pytest.mark.parametrize(
    ("custom", "expected"),
    [
        ({}, "has no query"),
        ({"query": "  "}, "has no query"),
        ({"query": "SELECT 1", "querry": "x"}, "unknown key 'querry'"),
        ({"query": "SELECT 1", "format": "xlsx"}, "custom.format 'xlsx' is not supported"),
        ({"query": "SELECT 1", "database": ""}, "custom.database must be"),
        ({"query": "SELECT 1", "database": "postgresql://a@h/d?bogus=1"}, "not a valid"),
    ],
)
def test_malformed_templates_are_usage_errors(custom: dict, expected: str) -> None:
    with pytest.raises(UsageError, match=expected):
        parse_template(template(**custom))


@pytest.mark.parametrize("dsn", [
    "postgresql://app:hunter2-secret@127.0.0.1/app",
    "postgres://app@127.0.0.1/app?password=hunter2-secret",
])
def test_a_password_in_the_dsn_is_refused_without_echoing_it(dsn: str) -> None:
    with pytest.raises(UsageError, match="sql_password") as caught:
        parse_template(template(query="SELECT 1", database=dsn))
    assert "hunter2-secret" not in str(caught.value)


def test_params_survive_the_trip_to_the_worker_with_their_types() -> None:
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    inputs = {"n": 3, "x": 1.5, "s": "'; DROP TABLE x; --", "b": True, "none": None,
              "when": when, "day": dt.date(2024, 1, 2), "span": dt.timedelta(seconds=90),
              "raw": b"\x00\xff", "ids": [1, 2, when], "doc": {"a": [1, 2]},
              "table": StructuredDataset(uri="s3://bucket/t.parquet", format="parquet")}
    decoded = decode_params(encode_params(inputs))
    assert decoded == {**inputs, "ids": [1, 2, when], "doc": JsonValue({"a": [1, 2]}),
                       "table": "s3://bucket/t.parquet"}


def test_unbindable_inputs_name_the_input() -> None:
    with pytest.raises(UsageError, match="input 'obj': a object cannot be bound"):
        encode_params({"obj": object()})
