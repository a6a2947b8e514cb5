"""The job directory: the only state a SQL job has outside its worker process.

The daemon writes `spec.json` and, on delete, `cancelled`; the worker writes
`status.json` (atomically, so a reader never sees half a file), `worker.log` and the
result file. Any daemon process can read them, which is what makes the connector
stateless. No file ever holds the database password.
"""

from __future__ import annotations

import json
import re
import stat
import time
from pathlib import Path
from typing import Any, Optional

from connector_cli.errors import UsageError
from connector_cli.sdk.job_dirs import (
    checked_job_dir,
    default_state_dir,
    private_dir,
    write_json,
)

SPEC = "spec.json"
STATUS = "status.json"
CANCELLED = "cancelled"
LOG = "worker.log"
STATE_DIR_ENV = "FLYTE_CONNECTOR_SQL_STATE_DIR"
JOB_ID = re.compile(r"^[0-9a-f]{16}$")

STARTING, CONNECTING, RUNNING, WRITING = "starting", "connecting", "running", "writing"
SUCCEEDED, FAILED, ABORTED = "succeeded", "failed", "aborted"
TERMINAL = frozenset({SUCCEEDED, FAILED, ABORTED})


def local_path(prefix: str) -> Optional[str]:
    """The filesystem path of a local output prefix (plain or file://), else None."""
    if prefix.startswith("file://"):
        return prefix[len("file://"):] or "/"
    if "://" in prefix:
        return None
    return prefix


def state_dir() -> Path:
    """Where jobs with a remote output prefix keep their files on the connector host."""
    return default_state_dir("flyte-connector-sql", STATE_DIR_ENV)


def make_job_dir(output_prefix: str, job_id: str) -> tuple[Path, str]:
    """Create the job directory and return it with the URI prefix its results will have.

    A local output prefix holds the job (`<prefix>/sql-<id>`), so results land under it;
    otherwise the job lives in the state directory on this host.
    """
    local = local_path(output_prefix) if output_prefix else None
    if local is not None:
        job_dir = Path(local).absolute() / f"sql-{job_id}"
        uri = f"{output_prefix.rstrip('/')}/sql-{job_id}"
    else:
        job_dir = private_dir(state_dir().absolute(), "SQL state directory") / job_id
        uri = ""
    try:
        job_dir.mkdir(parents=True, exist_ok=False, mode=0o700)
    except OSError as exc:
        raise UsageError(f"cannot create the SQL job directory {job_dir}: {exc.strerror}") from None
    job_dir = job_dir.resolve()
    return job_dir, uri or str(job_dir)


def checked_dir(job_dir: str, job_id: str) -> Optional[Path]:
    """The job directory a meta names, or None when it is gone.

    `UsageError` when the path is not this connector's directory of that job: relative,
    through a symlink or `..`, not named after the job, not ours, or without a spec.
    """
    if not JOB_ID.match(job_id):
        raise UsageError("resource_meta names no SQL job directory")
    path = checked_job_dir(job_dir, (job_id, f"sql-{job_id}").__contains__,
                           "SQL job directory")
    if path is None:
        return None
    try:
        spec = (path / SPEC).lstat()
    except OSError:
        spec = None
    if spec is None or not stat.S_ISREG(spec.st_mode):
        raise UsageError("resource_meta names no SQL job directory")
    return path


def read_json(path: Path) -> Optional[dict[str, Any]]:
    """The JSON object in `path`, or None when it does not exist (yet)."""
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except FileNotFoundError:
        return None


def update_status(job_dir: Path, state: str, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into status.json with the new state and a timestamp."""
    status = read_json(job_dir / STATUS) or {"started": time.time(), "rows": 0}
    status.update(fields, state=state, updated=time.time())
    write_json(job_dir / STATUS, status)
    return status


def log_tail(job_dir: Path, limit: int = 400) -> str:
    """The end of the worker's stderr, for a crash message."""
    try:
        data = (job_dir / LOG).read_bytes()[-limit:]
    except OSError:
        return ""
    return data.decode("utf-8", "replace").strip()
