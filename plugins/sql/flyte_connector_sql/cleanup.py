"""Removing job files: a deleted job's at once, a finished job's after a retention period.

`delete` removes the result and the worker log unless `FLYTE_CONNECTOR_SQL_KEEP_DELETED=1`,
keeping `spec.json`, `status.json` and `cancelled` so `get` still answers ABORTED. A sweep,
run at most once a minute from `create`, removes job directories whose job ended more
than `FLYTE_CONNECTOR_SQL_RETENTION_SECONDS` ago (default one day; `off` keeps them) and
whose worker no longer runs, under the state directory and the local output prefixes
this process has used.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import threading
import time
from pathlib import Path
from typing import Optional

from connector_cli.errors import UsageError
from flyte_connector_sql import jobfiles

log = logging.getLogger(__name__)

RETENTION_ENV = "FLYTE_CONNECTOR_SQL_RETENTION_SECONDS"
KEEP_DELETED_ENV = "FLYTE_CONNECTOR_SQL_KEEP_DELETED"
DEFAULT_RETENTION = 24 * 3600.0
SWEEP_EVERY = 60.0
_KEEP = frozenset({jobfiles.SPEC, jobfiles.STATUS, jobfiles.CANCELLED})


def retention() -> Optional[float]:
    """Seconds a finished job's directory is kept; None when the sweep is off."""
    raw = os.environ.get(RETENTION_ENV, "").strip().lower()
    if not raw:
        return DEFAULT_RETENTION
    if raw == "off":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise UsageError(f"{RETENTION_ENV}={raw!r} is not a number of seconds >= 0 (or 'off')")
    return value


def discard(job_dir: Path) -> None:
    """Remove a deleted job's files but the few `get` needs to say ABORTED."""
    if os.environ.get(KEEP_DELETED_ENV, "").strip().lower() in ("1", "true", "yes"):
        return
    for entry in os.scandir(job_dir):
        if entry.name in _KEEP:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            try:
                os.unlink(entry.path)
            except OSError:
                pass


class Sweeper:
    """Remembers where job directories are and sweeps them now and then."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bases: set[Path] = set()
        self._last = 0.0

    def remember(self, job_dir: Path) -> None:
        """Note the directory holding `job_dir` (a local output prefix or the state dir)."""
        with self._lock:
            self._bases.add(job_dir.parent)

    def maybe_sweep(self) -> int:
        """Sweep when the last sweep is more than `SWEEP_EVERY` seconds ago."""
        keep = retention()
        with self._lock:
            now = time.monotonic()
            if keep is None or now - self._last < SWEEP_EVERY:
                return 0
            self._last = now
            bases = sorted(self._bases | {jobfiles.state_dir().absolute()})
        return sweep(bases, keep)


def sweep(bases: list[Path], keep: float, now: Optional[float] = None) -> int:
    """Remove job directories under `bases` that ended more than `keep` seconds ago and
    have no running worker; returns how many were removed."""
    from flyte_connector_sql import process

    now = time.time() if now is None else now
    live: Optional[set[str]] = None
    removed = 0
    for base in bases:
        try:
            entries = [Path(e.path) for e in os.scandir(base)]
        except OSError:
            continue
        for path in entries:
            job_id = path.name[len("sql-"):] if path.name.startswith("sql-") else path.name
            if not jobfiles.JOB_ID.match(job_id):
                continue
            ended = _ended_at(path)
            if ended is None or now - ended < keep:
                continue
            if live is None:
                live = process.live_job_dirs()
            if str(path) in live or str(path.resolve()) in live:
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    if removed:
        log.info("removed %d SQL job directories older than %gs", removed, keep)
    return removed


def _ended_at(job_dir: Path) -> Optional[float]:
    """When the job last changed its status (its end, for a finished or lost job)."""
    try:
        info = job_dir.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            return None
        return (job_dir / jobfiles.STATUS).lstat().st_mtime
    except OSError:
        return None
