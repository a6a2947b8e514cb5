"""Fixtures for the SQL plugin: a session-wide throwaway PostgreSQL server and a job runner."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from sql_pgserver import PgServer, find_pg_bin, start_server, unavailable
from sql_testlib import Jobs


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    """A PostgreSQL server on 127.0.0.1 with role `app` (password `pg.password`)."""
    bindir = find_pg_bin()
    if bindir is None:
        unavailable("PostgreSQL is not installed (no initdb on PATH or in "
                    "/usr/lib/postgresql/*/bin); `make postgres` installs it")
    server = start_server(bindir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def sqlite_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """SQLite databases of a test live under its tmp_path, the one allowed root."""
    monkeypatch.setenv("FLYTE_CONNECTOR_SQL_SQLITE_ROOTS", str(tmp_path))
    return tmp_path


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[Jobs]:
    """Create SQL jobs with output under tmp_path; their workers are stopped afterwards."""
    runner = Jobs(tmp_path / "out")
    try:
        yield runner
    finally:
        runner.cleanup()
