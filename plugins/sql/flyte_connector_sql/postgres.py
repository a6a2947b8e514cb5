"""Daemon-side PostgreSQL calls: what a job's backend is doing, cancel it and check that
it is gone.

A backend is matched by pid *and* the job's `application_name`, so a recycled backend
pid that now serves someone else is never cancelled.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from flyte_connector_sql.process import wait_until
from flyte_connector_sql.worker import APP_NAME_PREFIX

log = logging.getLogger(__name__)

_MATCH = "WHERE pid = %(pid)s AND application_name = %(app)s"


def connect(dsn: str, password: Optional[str], timeout: int = 3) -> Any:
    """A short-lived autocommit connection for control queries."""
    import psycopg

    return psycopg.connect(
        dsn, password=password, autocommit=True, connect_timeout=timeout,
        application_name=APP_NAME_PREFIX + "control",
    )


def backend_running(conn: Any, backend_pid: int, job_name: str) -> bool:
    """True while the job's backend still exists in pg_stat_activity."""
    row = conn.execute(
        f"SELECT count(*) FROM pg_stat_activity {_MATCH}",
        {"pid": backend_pid, "app": APP_NAME_PREFIX + job_name},
    ).fetchone()
    return bool(row and row[0])


_AUTH_WORDS = ("authentication", "password", "role ", "permission", "does not exist")


def activity(dsn: str, password: Optional[str], backend_pid: int, job_name: str) -> str:
    """What the job's backend is doing, e.g. 'active, waiting on Timeout:PgSleep'; '' when
    the server no longer lists it. Raises psycopg's errors (see `unreachable`)."""
    with connect(dsn, password, timeout=2) as conn:
        row = conn.execute(
            f"SELECT state, wait_event_type, wait_event FROM pg_stat_activity {_MATCH}",
            {"pid": backend_pid, "app": APP_NAME_PREFIX + job_name},
        ).fetchone()
    if not row:
        return ""
    state, kind, event = row
    return f"{state}, waiting on {kind}:{event}" if event else str(state or "")


def unreachable(exc: BaseException) -> bool:
    """True when a connection failed because the server cannot be reached or does not
    take connections now (down, restarting, shutting down, full): a later try may work.
    Refused credentials are not that."""
    text = str(exc).lower()
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate is not None:
        return str(sqlstate)[:2] in ("08", "53", "57")
    return not any(word in text for word in _AUTH_WORDS)


def cancel_backend(dsn: str, password: Optional[str], backend_pid: int, job_name: str,
                   stop_worker: Any, timeout: float = 1.0) -> bool:
    """Cancel the job's query on the server, stop its worker, make sure the backend ends.

    `pg_cancel_backend` first (the query stops at once); `stop_worker()` then ends the
    client side, which closes the session; if the backend is still there after
    `timeout` seconds, `pg_terminate_backend`. Returns True once the backend is gone.
    """
    args = {"pid": backend_pid, "app": APP_NAME_PREFIX + job_name}
    with connect(dsn, password) as conn:
        conn.execute(f"SELECT pg_cancel_backend(pid) FROM pg_stat_activity {_MATCH}", args)
        stop_worker()
        if wait_until(lambda: not backend_running(conn, backend_pid, job_name), timeout):
            return True
        log.info("backend %d of SQL job %s ignored the cancel; terminating it",
                 backend_pid, job_name)
        conn.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity {_MATCH}", args)
        return wait_until(lambda: not backend_running(conn, backend_pid, job_name), timeout)
