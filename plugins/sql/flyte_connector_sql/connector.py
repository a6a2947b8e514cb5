"""`SQLConnector` (task type "sql"): queries on SQLite or PostgreSQL in detached workers.

`create` writes the job spec, starts the worker and returns a `SQLMeta`; `get` and
`delete` need nothing but that meta and the job directory it names, so any daemon
process (or one restarted since) can answer. The database password comes only from the
connection secret `sql_password` and is never written to the meta, a file or a message.
The daemon signs the meta (`sign_resource_meta`); the connector still checks it against
the job directory (`jobfiles.checked_dir`) and the worker's own command line before it
reads a file, signals a process or dials a database.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from flyteidl2.core.execution_pb2 import TaskExecution, TaskLog

from connector_cli.errors import ConnectorError, TransientError
from connector_cli.sdk.connector import AsyncConnector, Resource
from connector_cli.sdk.resource_meta import ResourceMeta, check_meta_path
from flyte_connector_sql import cleanup, jobfiles, process
from flyte_connector_sql.spec import (
    POSTGRESQL,
    encode_params,
    parse_template,
    password_from,
    scrub,
)

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 5.0
STOP_GRACE = 0.8
_PHASES = {
    jobfiles.STARTING: TaskExecution.INITIALIZING,
    jobfiles.CONNECTING: TaskExecution.INITIALIZING,
    jobfiles.RUNNING: TaskExecution.RUNNING,
    jobfiles.WRITING: TaskExecution.RUNNING,
}


@dataclass
class SQLMeta(ResourceMeta):
    """Where a SQL job lives: its worker (pid + start fingerprint) and its directory."""

    job_id: str
    job_dir: str
    job_uri: str
    engine: str
    format: str
    pid: int
    start_ticks: int
    dsn: str = ""
    backend_pid: Optional[int] = None

    def __post_init__(self) -> None:
        """Refuse job paths no job of ours has (the daemon answers INVALID_ARGUMENT)."""
        check_meta_path(self.job_dir, "job_dir")


class SQLConnector(AsyncConnector):
    """Runs the template's query with the task's inputs bound as named parameters."""

    name = "SQL Connector"
    task_type_name = "sql"
    metadata_type = SQLMeta
    sign_resource_meta = True

    def __init__(self) -> None:
        self._sweeper = cleanup.sweeper()

    def create(
        self,
        task_template: Any,
        output_prefix: str,
        inputs: Optional[dict[str, Any]] = None,
        task_execution_metadata: Any = None,
        **kwargs: Any,
    ) -> SQLMeta:
        """Start the query in a detached worker and return as soon as it has connected."""
        spec = parse_template(task_template)
        params = encode_params(inputs)
        self._sweeper.maybe_sweep()
        job_id = uuid.uuid4().hex[:16]
        job_dir, job_uri = jobfiles.make_job_dir(output_prefix, job_id)
        self._sweeper.remember(job_dir.parent)
        jobfiles.write_json(job_dir / jobfiles.SPEC, {**spec.to_json(), "params": params})
        jobfiles.update_status(job_dir, jobfiles.STARTING)
        password = password_from(kwargs) if spec.engine == POSTGRESQL else None
        pid, ticks, handshake = process.spawn_worker(
            job_dir, {"password": password} if password else {}, HANDSHAKE_TIMEOUT
        )
        backend_pid = handshake.get("backend_pid")
        log.debug("SQL job %s: worker %d, backend %s", job_id, pid, backend_pid)
        return SQLMeta(
            job_id=job_id, job_dir=str(job_dir.absolute()), job_uri=job_uri, engine=spec.engine,
            format=spec.format, pid=pid, start_ticks=ticks,
            dsn=spec.target if spec.engine == POSTGRESQL else "",
            backend_pid=backend_pid if isinstance(backend_pid, int) else None,
        )

    def get(self, resource_meta: SQLMeta, **kwargs: Any) -> Resource:
        """Report progress, the database's error, or the row count and the result dataset."""
        meta = resource_meta
        job_dir = jobfiles.checked_dir(meta.job_dir, meta.job_id)
        status = jobfiles.read_json(job_dir / jobfiles.STATUS) if job_dir else None
        if job_dir is None or status is None:
            return Resource(phase=TaskExecution.RETRYABLE_FAILED,
                            message=f"the job directory {meta.job_dir} has no status (removed?)")
        state = status.get("state")
        if state not in jobfiles.TERMINAL and not _running(meta):
            status = jobfiles.read_json(job_dir / jobfiles.STATUS) or status
            state = status.get("state")
        cancelled = (job_dir / jobfiles.CANCELLED).exists()
        info = _info(resource_meta, status)
        # The link goes out from the first answer: the backend shows what a poll returns
        # only when the phase changes, so a link added later stays hidden until the end.
        links = [TaskLog(name="SQL worker log", uri=(job_dir / jobfiles.LOG).absolute().as_uri())]
        if state == jobfiles.SUCCEEDED:
            return self._succeeded(resource_meta, status, info, links)
        if cancelled or state == jobfiles.ABORTED:
            return Resource(phase=TaskExecution.ABORTED, message="cancelled", custom_info=info,
                            log_links=links)
        if state == jobfiles.FAILED:
            message = scrub(str(status.get("message", "the query failed")),
                            password_from(kwargs))
            return Resource(phase=TaskExecution.FAILED, message=message, custom_info=info,
                            log_links=links)
        if not _running(resource_meta):
            tail = scrub(jobfiles.log_tail(job_dir), password_from(kwargs))
            message = "the SQL worker exited unexpectedly" + (f": {tail}" if tail else "")
            # Lost, not failed: the query may well succeed when Flyte retries the task.
            return Resource(phase=TaskExecution.RETRYABLE_FAILED, message=message,
                            custom_info=info, log_links=links)
        message = _progress(status)
        if meta.engine == POSTGRESQL and state == jobfiles.RUNNING:
            doing = _server_activity(meta, status, password_from(kwargs))
            message = f"{message}; server: {doing}" if doing else message
        return Resource(phase=_PHASES.get(str(state), TaskExecution.RUNNING),
                        message=message, custom_info=info, log_links=links)

    def _succeeded(self, meta: SQLMeta, status: dict[str, Any], info: dict[str, Any],
                   links: list[TaskLog]) -> Resource:
        from connector_cli.literals import StructuredDataset

        rows = int(status.get("rows", 0))
        uri = f"{meta.job_uri}/{status['result']}"
        return Resource(
            phase=TaskExecution.SUCCEEDED, message=f"{rows} rows", custom_info=info,
            log_links=links,
            outputs={"row_count": rows, "result": StructuredDataset(uri=uri, format=meta.format)},
        )

    def delete(self, resource_meta: SQLMeta, **kwargs: Any) -> None:
        """Cancel the query (on the PostgreSQL server too), stop the worker and remove the
        job's files (a tombstone stays); idempotent."""
        meta = resource_meta
        job_dir = jobfiles.checked_dir(meta.job_dir, meta.job_id)
        if job_dir is None:
            return
        status = jobfiles.read_json(job_dir / jobfiles.STATUS) or {}
        if status.get("state") in jobfiles.TERMINAL and not _running(meta):
            if (job_dir / jobfiles.CANCELLED).exists():
                cleanup.discard(job_dir)
            return
        (job_dir / jobfiles.CANCELLED).touch()
        backend_pid = status.get("backend_pid", meta.backend_pid)
        if meta.engine == POSTGRESQL and isinstance(backend_pid, int):
            self._cancel_backend(meta, job_dir, backend_pid, kwargs)
        if not process.stop(meta.pid, meta.start_ticks, STOP_GRACE, job_dir=meta.job_dir):
            raise ConnectorError(f"SQL job {meta.job_id}: the worker did not stop")
        cleanup.discard(job_dir)

    def _cancel_backend(self, meta: SQLMeta, job_dir: Path, backend_pid: int,
                        kwargs: dict[str, Any]) -> None:
        """`pg_cancel_backend` over a control connection to the server the job's own spec
        names; if none can be opened (say, no password was sent), the worker's own cancel
        request (psycopg's, on SIGTERM). The reason is logged, never returned: whether a
        port is open or closed is not the caller's to learn."""
        import psycopg

        from flyte_connector_sql.postgres import cancel_backend

        password = password_from(kwargs)
        spec = jobfiles.read_json(job_dir / jobfiles.SPEC) or {}
        dsn = spec.get("target")

        def stop_worker() -> None:
            process.stop(meta.pid, meta.start_ticks, STOP_GRACE, job_dir=meta.job_dir)

        if spec.get("engine") != POSTGRESQL or not isinstance(dsn, str) or dsn != meta.dsn:
            stop_worker()
            return
        try:
            gone = cancel_backend(dsn, password, backend_pid, job_dir.name, stop_worker)
        except psycopg.Error as exc:
            reason = scrub(_first_line(exc), password)
            log.warning("SQL job %s: no control connection (%s); using the worker's cancel",
                        meta.job_id, reason)
            stop_worker()
            status = jobfiles.read_json(job_dir / jobfiles.STATUS) or {}
            if status.get("state") in jobfiles.TERMINAL:
                return
            raise ConnectorError(
                f"SQL job {meta.job_id}: cannot cancel the query on the database server "
                "(the connector log has the reason)"
            ) from None
        if not gone:
            raise ConnectorError(
                f"SQL job {meta.job_id}: backend {backend_pid} is still running after cancel"
            )


def _server_activity(meta: SQLMeta, status: dict[str, Any], password: Optional[str]) -> str:
    """What the query's backend is doing, asked of the server the meta names. A server
    that cannot be reached is a `TransientError`: the daemon answers the last known phase
    for a while (`serve --get-error-grace`) instead of failing the poll. Anything else
    (no password, refused credentials) just leaves the detail out."""
    import psycopg

    from flyte_connector_sql.postgres import activity, unreachable

    backend_pid = status.get("backend_pid", meta.backend_pid)
    if not meta.dsn or not isinstance(backend_pid, int):
        return ""
    try:
        # the worker names its session after the job directory
        return activity(meta.dsn, password, backend_pid, Path(meta.job_dir).name)
    except psycopg.Error as exc:
        reason = scrub(_first_line(exc), password)
        if isinstance(exc, psycopg.OperationalError) and unreachable(exc):
            raise TransientError(
                f"SQL job {meta.job_id}: cannot reach the PostgreSQL server to check the "
                f"query: {reason}") from None
        log.debug("SQL job %s: no activity from the server (%s)", meta.job_id, reason)
        return ""


def _running(meta: SQLMeta) -> bool:
    """True while the job's own worker runs (see `process.is_worker`)."""
    return process.is_worker(meta.pid, meta.start_ticks, meta.job_dir)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _progress(status: dict[str, Any]) -> str:
    elapsed = time.time() - float(status.get("started", time.time()))
    rows = int(status.get("rows", 0))
    text = f"{status.get('state', 'running')} for {elapsed:.1f}s"
    return f"{text}, {rows} rows written" if rows else text


def _info(meta: SQLMeta, status: dict[str, Any]) -> dict[str, Any]:
    return {"engine": meta.engine, "job_id": meta.job_id, "rows": int(status.get("rows", 0)),
            "state": str(status.get("state", ""))}
