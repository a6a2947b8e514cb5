"""Removing job files: a deleted job's at once, a finished job's after a retention period.

`delete` removes the result and the worker log unless `FLYTE_CONNECTOR_SQL_KEEP_DELETED=1`,
keeping `spec.json`, `status.json` and `cancelled` so `get` still answers ABORTED. A sweep,
run at most once a minute from `create`, removes job directories whose job ended more
than `FLYTE_CONNECTOR_SQL_RETENTION_SECONDS` ago (default one day; `off` keeps them) and
whose worker no longer runs, under the state directory and the local output prefixes
this process has used. The mechanism is the SDK's (`connector_cli.sdk.job_dirs`); the
rules are this module's: a SQL job ended when its status last changed, and runs while a
worker names its directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from connector_cli.sdk.job_dirs import RetentionPolicy, Sweeper
from flyte_connector_sql import jobfiles


def _ended_at(job_dir: Path) -> Optional[float]:
    """When the job last changed its status (its end, for a finished or lost job), or
    None for what is not a SQL job directory."""
    name = job_dir.name
    job_id = name[len("sql-"):] if name.startswith("sql-") else name
    if not jobfiles.JOB_ID.match(job_id):
        return None
    try:
        return (job_dir / jobfiles.STATUS).lstat().st_mtime
    except OSError:
        return None


def _still_runs() -> Callable[[Path], bool]:
    """A job directory runs while a worker process names it (one /proc pass)."""
    from flyte_connector_sql import process

    live = process.live_job_dirs()
    return lambda job_dir: str(job_dir) in live or str(job_dir.resolve()) in live


def _home() -> Path:
    """The state directory, swept even before this process has used it."""
    return jobfiles.state_dir().absolute()


POLICY = RetentionPolicy(
    env_prefix="FLYTE_CONNECTOR_SQL",
    tombstone=frozenset({jobfiles.SPEC, jobfiles.STATUS, jobfiles.CANCELLED}),
    ended_at=_ended_at,
    still_runs=_still_runs,
    noun="SQL",
)
RETENTION_ENV = POLICY.retention_env
discard = POLICY.discard
sweep = POLICY.sweep


def sweeper() -> Sweeper:
    """The sweeper of one connector: the bases it used and always the state directory."""
    return Sweeper(POLICY, _home)
