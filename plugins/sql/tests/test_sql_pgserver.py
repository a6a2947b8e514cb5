"""The throwaway PostgreSQL server the tests use: unprivileged, loopback only, password auth."""

from __future__ import annotations

import os

import psycopg
import pytest
from sql_pgserver import PgServer, unavailable


def test_missing_postgres_fails_under_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="not installed"):
        unavailable("PostgreSQL is not installed")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        unavailable("PostgreSQL is not installed")


def test_the_server_is_unprivileged_local_and_needs_the_password(pg: PgServer) -> None:
    owner = os.stat(pg.datadir).st_uid
    assert owner != 0 or os.geteuid() != 0
    with pg.admin() as admin:
        settings = dict(admin.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('listen_addresses', 'unix_socket_directories', 'port')").fetchall())
    assert settings == {"listen_addresses": "127.0.0.1", "port": str(pg.port),
                        "unix_socket_directories": str(pg.root)}
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(pg.dsn, connect_timeout=5)
    with psycopg.connect(pg.dsn, password=pg.password, connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("app",)
