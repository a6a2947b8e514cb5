"""The detached process that runs one query: `python -m flyte_connector_sql.worker JOB_DIR`.

It reads the password (if any) from stdin, the job from `spec.json`, connects, prints one
handshake line (the PostgreSQL backend pid) and closes stdout, then runs the query,
streams the rows into the result file and records every step in `status.json`.
SIGTERM cancels: PostgreSQL through psycopg's cancel request, SQLite through its
progress handler, which aborts the statement as `sqlite3_interrupt` does.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Optional

from flyte_connector_sql import jobfiles
from flyte_connector_sql.results import ResultWriter
from flyte_connector_sql.spec import (
    POSTGRESQL,
    JsonValue,
    check_sqlite_root,
    decode_params,
    scrub,
)

BATCH = 1000
PROGRESS_EVERY = 0.5
APP_NAME_PREFIX = "flyte-connector-sql/"


class Cancelled(KeyboardInterrupt):
    """Raised when SIGTERM asks the job to stop (a KeyboardInterrupt, so psycopg cancels)."""


class LimitExceeded(Exception):
    """The job passed one of its limits (result size, run time): it fails with this."""


class Job:
    """One query run: its directory, spec, cancel flag and handshake."""

    def __init__(self, job_dir: Path, spec: dict[str, Any], password: Optional[str]) -> None:
        self.dir = job_dir
        self.spec = spec
        self.password = password
        self.cancelled = False
        self.timed_out = False
        self.raise_on_cancel = False
        self._announced = False
        self._last_progress = 0.0

    def on_signal(self, signum: int, frame: Any) -> None:
        self.cancelled = True
        if self.raise_on_cancel:
            raise Cancelled()

    def time_out(self) -> None:
        """The run time limit passed: cancel as SIGTERM does (from a timer thread)."""
        import os

        self.timed_out = True
        os.kill(os.getpid(), signal.SIGTERM)

    def check(self) -> None:
        if self.cancelled:
            raise Cancelled()

    def announce(self, **fields: Any) -> None:
        """Send the one handshake line the daemon waits for, then close stdout."""
        if self._announced:
            return
        self._announced = True
        try:
            sys.stdout.write(json.dumps(fields) + "\n")
            sys.stdout.flush()
            sys.stdout.close()
        except OSError:
            pass

    def progress(self, state: str, rows: int) -> None:
        now = time.monotonic()
        if now - self._last_progress >= PROGRESS_EVERY:
            self._last_progress = now
            jobfiles.update_status(self.dir, state, rows=rows)

    def write_rows(self, cursor: Any, columns: list[str]) -> tuple[int, Optional[str]]:
        """Fetch everything from `cursor` into the result file; (row count, file name)."""
        self.progress(jobfiles.WRITING, 0)
        writer = ResultWriter(self.dir, self.spec["format"], columns)
        try:
            while True:
                self.check()
                batch = cursor.fetchmany(BATCH)
                if not batch:
                    break
                writer.write(batch)
                self.progress(jobfiles.WRITING, writer.rows)
                limit = self.spec.get("max_result_bytes")
                if limit and writer.size() > limit:
                    raise LimitExceeded(
                        f"the result passed max_result_bytes ({int(limit)} bytes) after "
                        f"{writer.rows} rows; select less, or raise custom.max_result_bytes")
        except BaseException:
            writer.discard()
            raise
        return writer.rows, writer.close().name


def _authorize(action: int, *args: Any) -> int:
    """SQLite authorizer: no ATTACH (which `VACUUM INTO` also asks for) or DETACH, so a
    query can neither open nor create another database file."""
    import sqlite3

    return sqlite3.SQLITE_DENY if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH) \
        else sqlite3.SQLITE_OK


def run_sqlite(job: Job, params: dict[str, Any]) -> tuple[int, Optional[str]]:
    import sqlite3

    path = job.spec["target"]
    try:
        if path == ":memory:":
            conn = sqlite3.connect(path, isolation_level=None)
        else:
            check_sqlite_root(path)
            quoted = urllib.parse.quote(path)
            conn = sqlite3.connect(f"file:{quoted}?mode=rw", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise sqlite3.OperationalError(f"cannot open {path}: {exc}") from None
    conn.set_authorizer(_authorize)
    jobfiles.update_status(job.dir, jobfiles.RUNNING)
    job.announce(ready=True)
    conn.set_progress_handler(lambda: 1 if job.cancelled else 0, 10_000)
    try:
        bound = {k: _sqlite_value(v) for k, v in params.items()}
        try:
            cursor = conn.execute(job.spec["query"], bound)
        except sqlite3.OperationalError:
            job.check()
            raise
        if cursor.description is None:
            return max(cursor.rowcount, 0), _empty_result(job)
        return job.write_rows(cursor, [d[0] for d in cursor.description])
    finally:
        conn.close()


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, JsonValue):
        return json.dumps(value.value)
    if isinstance(value, list):
        return json.dumps([_sqlite_value(v) for v in value])
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "total_seconds"):
        return value.total_seconds()
    return value


def run_postgres(job: Job, params: dict[str, Any]) -> tuple[int, Optional[str]]:
    import psycopg
    from psycopg.types.json import Jsonb

    conn = psycopg.connect(
        job.spec["target"], password=job.password, autocommit=True, connect_timeout=10,
        application_name=APP_NAME_PREFIX + job.dir.name,
    )
    with conn:
        backend_pid = conn.info.backend_pid
        jobfiles.update_status(job.dir, jobfiles.RUNNING, backend_pid=backend_pid)
        job.announce(ready=True, backend_pid=backend_pid)
        job.raise_on_cancel = True
        job.check()
        bound = {k: Jsonb(v.value) if isinstance(v, JsonValue) else v for k, v in params.items()}
        cursor = conn.execute(job.spec["query"], bound or None)
        if cursor.description is None:
            return max(cursor.rowcount, 0), _empty_result(job)
        return job.write_rows(cursor, [d.name for d in cursor.description])


def _empty_result(job: Job) -> str:
    """A statement without a result set (DDL, INSERT...) still yields an (empty) dataset."""
    return ResultWriter(job.dir, job.spec["format"], []).close().name


def describe(exc: BaseException, engine: str) -> str:
    """The database's own message, first line, with the SQLSTATE when there is one."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if text.startswith("connection failed: "):
        text = text[len("connection failed: "):]
    if engine == POSTGRESQL:
        code = getattr(exc, "sqlstate", None)
        return f"PostgreSQL error {code}: {text}" if code else f"PostgreSQL error: {text}"
    return f"SQLite error: {text}"


def run(job_dir: Path) -> int:
    """Run the job in `job_dir`; the exit status is 0 unless the job could not be recorded."""
    secret = json.loads(sys.stdin.read() or "{}")
    sys.stdin.close()
    spec = jobfiles.read_json(job_dir / jobfiles.SPEC) or {}
    job = Job(job_dir, spec, secret.get("password"))
    signal.signal(signal.SIGTERM, job.on_signal)
    signal.signal(signal.SIGINT, job.on_signal)
    jobfiles.update_status(job_dir, jobfiles.CONNECTING)
    engine = spec.get("engine", "")
    timer = threading.Timer(float(spec.get("timeout_seconds") or 0) or 1e9, job.time_out)
    timer.daemon = True
    timer.start()
    try:
        runner = run_postgres if engine == POSTGRESQL else run_sqlite
        rows, result = runner(job, decode_params(spec.get("params", {})))
        job.raise_on_cancel = False
        jobfiles.update_status(job_dir, jobfiles.SUCCEEDED, rows=rows, result=result)
    except Cancelled:
        job.raise_on_cancel = False
        _ended_early(job)
    except LimitExceeded as exc:
        job.raise_on_cancel = False
        jobfiles.update_status(job_dir, jobfiles.FAILED, message=str(exc))
    except Exception as exc:  # noqa: BLE001 - the query's failure is the job's result
        job.raise_on_cancel = False
        if job.cancelled:
            _ended_early(job)
        else:
            message = scrub(describe(exc, engine), job.password)
            jobfiles.update_status(job_dir, jobfiles.FAILED, message=message)
    finally:
        timer.cancel()
        job.announce(ready=False)
    return 0


def _ended_early(job: Job) -> None:
    """Record a job stopped by delete (ABORTED) or by its run time limit (FAILED)."""
    if job.timed_out:
        limit = float(job.spec.get("timeout_seconds") or 0)
        jobfiles.update_status(job.dir, jobfiles.FAILED, message=(
            f"the query ran longer than timeout_seconds ({limit:g} s) and was cancelled; "
            "raise custom.timeout_seconds or make it faster"))
    else:
        jobfiles.update_status(job.dir, jobfiles.ABORTED, message="cancelled by delete")


def main(argv: list[str]) -> int:
    """Entry point: exactly one argument, the job directory the daemon prepared."""
    if len(argv) != 1 or not Path(argv[0], jobfiles.SPEC).is_file():
        sys.stderr.write("usage: python -m flyte_connector_sql.worker JOB_DIR "
                         "(a directory holding spec.json; started by the SQL connector)\n")
        return 2
    return run(Path(argv[0]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
