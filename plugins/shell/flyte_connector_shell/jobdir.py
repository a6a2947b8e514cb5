"""Job directories: made by the daemon, checked before use, removed when no longer needed.

`create` makes `shell-XXXXXXXX/` (mode 0700) and writes a random nonce into its `nonce`
file; the wrapper and every process of the job carry the same nonce in their
environment. A later call only touches a directory whose path is absolute and free of
symlinks and `..`, whose name is a shell job's, that this user owns, and whose nonce
matches the meta's: so a meta naming `/dev` or someone else's directory opens nothing.
Files named from meta (logs, outputs) must resolve inside that directory.

Terminal jobs' directories are removed after a retention period
(`FLYTE_CONNECTOR_SHELL_RETENTION_SECONDS`, default one day; `off` keeps them) by a sweep
that runs at most once a minute during `create`, and a deleted job's files go at once
(unless `FLYTE_CONNECTOR_SHELL_KEEP_DELETED=1`), leaving a small tombstone so `get`
still answers ABORTED until the sweep removes it too.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

from connector_cli import UsageError

log = logging.getLogger(__name__)

STATE_DIR_ENV = "FLYTE_CONNECTOR_SHELL_STATE_DIR"
RETENTION_ENV = "FLYTE_CONNECTOR_SHELL_RETENTION_SECONDS"
KEEP_DELETED_ENV = "FLYTE_CONNECTOR_SHELL_KEEP_DELETED"
DEFAULT_RETENTION = 24 * 3600.0
SWEEP_EVERY = 60.0
PREFIX = "shell-"
NONCE_FILE = "nonce"
DELETED_MARK = "deleted"
EXIT_FILE = "exit.json"
_KEEP = frozenset({NONCE_FILE, DELETED_MARK, EXIT_FILE})


def state_dir() -> Path:
    """Where jobs with a remote output prefix keep their directories."""
    configured = os.environ.get(STATE_DIR_ENV)
    return Path(configured) if configured else Path(tempfile.gettempdir(), "flyte-connector-shell")


def retention() -> Optional[float]:
    """Seconds a terminal job's directory is kept; None when the sweep is off."""
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


def keep_deleted() -> bool:
    """True when `delete` must leave the job's files in place."""
    return os.environ.get(KEEP_DELETED_ENV, "").strip().lower() in ("1", "true", "yes")


def make(base: Path) -> tuple[Path, str]:
    """A fresh job directory under `base` (its real path) and the job's nonce."""
    try:
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        job_dir = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base)).resolve()
    except OSError as exc:
        raise UsageError(
            f"shell task: cannot create a job directory in {str(base)!r}: {exc.strerror}"
        ) from None
    nonce = secrets.token_hex(16)
    fd = os.open(job_dir / NONCE_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(nonce)
    (job_dir / "outputs").mkdir()
    return job_dir, nonce


def _read_nonce(job_dir: Path) -> Optional[str]:
    try:
        fd = os.open(job_dir / NONCE_FILE, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd) as handle:
        return handle.read(64).strip()


def checked(job_dir: str, nonce: str) -> Optional[Path]:
    """The job directory a meta names, or None when it no longer exists.

    `UsageError` when the path is not one of this connector's job directories: relative,
    through a symlink or `..`, not named `shell-*`, not ours, or with another nonce.
    """
    path = Path(job_dir)
    if not path.is_absolute() or os.path.realpath(job_dir) != job_dir:
        raise UsageError("resource_meta names no shell job directory (not a real absolute path)")
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    except OSError:
        raise UsageError("resource_meta names no shell job directory") from None
    if (not path.name.startswith(PREFIX) or not stat.S_ISDIR(info.st_mode)
            or info.st_uid != os.getuid()):
        raise UsageError("resource_meta names no shell job directory")
    found = _read_nonce(path)
    if found is None or not nonce or not hmac.compare_digest(found, nonce):
        raise UsageError("resource_meta does not match the job directory it names")
    return path


def inside(job_dir: Path, relative: str) -> Optional[Path]:
    """`job_dir/relative` when it resolves (symlinks followed) inside `job_dir`, else None."""
    candidate = (job_dir / relative).resolve()
    return candidate if candidate.is_relative_to(job_dir) and candidate != job_dir else None


def discard(job_dir: Path) -> None:
    """Remove a deleted job's files, keeping the small tombstone `get` and the sweep need."""
    if keep_deleted():
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
    """Removes terminal job directories older than the retention under the known bases."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bases: set[Path] = set()
        self._last = 0.0

    def remember(self, base: Path) -> None:
        """A directory that holds job directories (the state dir, a local output prefix)."""
        with self._lock:
            self._bases.add(base)

    def maybe_sweep(self) -> int:
        """Sweep when the last sweep is more than `SWEEP_EVERY` seconds ago."""
        with self._lock:
            now = time.monotonic()
            if now - self._last < SWEEP_EVERY:
                return 0
            self._last = now
            bases = sorted(self._bases | {state_dir()})
        keep = retention()
        return 0 if keep is None else sweep(bases, keep)


def sweep(bases: list[Path], keep: float, now: Optional[float] = None) -> int:
    """Remove job directories under `bases` that ended more than `keep` seconds ago and
    have no live process; returns how many were removed."""
    from flyte_connector_shell import procfs

    now = time.time() if now is None else now
    live: Optional[set[bytes]] = None
    removed = 0
    for base in bases:
        try:
            entries = [e for e in os.scandir(base) if e.name.startswith(PREFIX)]
        except OSError:
            continue
        for entry in entries:
            ended = _ended_at(Path(entry.path))
            if ended is None or now - ended < keep:
                continue
            if live is None:
                live = procfs.running_markers()
            nonce = _read_nonce(Path(entry.path))
            if nonce is None or nonce.encode() in live:
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
    if removed:
        log.info("removed %d shell job directories older than %gs", removed, keep)
    return removed


def _ended_at(job_dir: Path) -> Optional[float]:
    """When a job directory's job ended (its exit record or tombstone; for a job that
    recorded neither, when it started), or None for what is not a job directory."""
    try:
        info = job_dir.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            return None
        times = [(job_dir / name).lstat().st_mtime for name in (EXIT_FILE, DELETED_MARK)
                 if (job_dir / name).exists()]
        if not times:  # lost (no exit record): judged by age, if no process runs it
            times = [(job_dir / NONCE_FILE).lstat().st_mtime]
    except OSError:
        return None
    return max(times)
