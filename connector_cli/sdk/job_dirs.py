"""Job directories on the daemon's host: how long they stay and how they go.

A connector that keeps a directory per job (its spec, logs, outputs, exit record) needs
the same two rules: a deleted job's files go at once but for a small tombstone (so `get`
still answers ABORTED), and a terminal job's directory goes after a retention period.
`RetentionPolicy` holds them, named by the plugin's environment prefix:
`<PREFIX>_RETENTION_SECONDS` (default one day; `off` keeps them; anything else but a
number of seconds >= 0 is a `UsageError`) and `<PREFIX>_KEEP_DELETED` (`1`, `true` or
`yes` leaves a deleted job's files in place). What a job directory is, when its job
ended and whether it still runs stay the plugin's own rules, given as two callbacks.
A `Sweeper` applies the policy at most once a minute, from `create`.

The rules every such plugin shares live here too: where state goes by default
(`default_state_dir`, private: `private_dir`), checking the directory a resource meta
names before trusting it (`checked_job_dir`), and writing a job file atomically
(`write_json`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import stat
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from connector_cli.errors import UsageError

log = logging.getLogger(__name__)

def default_state_dir(name: str, env: str) -> Path:
    """A state directory: `$env` when set, else `$XDG_STATE_HOME/<name>` (default
    `~/.local/state/<name>`). Callers make it private with `private_dir` before use."""
    configured = os.environ.get(env)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / name


def checked_job_dir(job_dir: str, named: Callable[[str], bool], what: str) -> Optional[Path]:
    """The job directory a resource meta names, or None when it no longer exists.

    `UsageError` ("resource_meta names no <what>") unless it is a real absolute path (no
    symlink, no `..`), a directory this user owns, whose name `named` accepts: a forged
    meta must not point a connector at another directory. The plugin then checks what
    its own files say (a nonce, a spec)."""
    path = Path(job_dir)
    refused = UsageError(f"resource_meta names no {what}")
    if not path.is_absolute() or os.path.realpath(job_dir) != job_dir:
        raise refused
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    except OSError:
        raise refused from None
    if not named(path.name) or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise refused
    return path


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically and durably: a temporary file in the same directory, flushed
    to disk, renamed into place (a reader sees the old file or the new one, never half)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def private_dir(path: Path, what: str) -> Path:
    """`path`, made with mode 0700 when missing, once checked: a real directory (not a
    symlink) owned by this user that no other user can write. `UsageError` otherwise: a
    directory another user owns or can write lets them plant or swap the files the daemon
    trusts there (a signing key, a job's nonce)."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = path.lstat()
    except OSError as exc:
        raise UsageError(f"cannot create the {what} {str(path)!r}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise UsageError(
            f"the {what} {str(path)!r} must be a directory owned by this user that no other "
            "user can write (mode 0700); fix it or choose another"
        )
    return path


DEFAULT_RETENTION = 24 * 3600.0
SWEEP_EVERY = 60.0

EndedAt = Callable[[Path], Optional[float]]
"""When the job of a directory ended (epoch seconds), or None when it is not a job
directory of this plugin (the sweep then leaves it alone)."""

StillRuns = Callable[[], Callable[[Path], bool]]
"""Takes one snapshot of the jobs running now (taken only when a sweep has a directory
old enough) and returns a test: True when a directory's job still runs, or cannot be
told apart from one that does (the sweep then spares it)."""


@dataclasses.dataclass(frozen=True)
class RetentionPolicy:
    """A plugin's retention settings and its own judgement of its job directories."""

    env_prefix: str
    """e.g. `FLYTE_CONNECTOR_SHELL`: names `<prefix>_RETENTION_SECONDS` and
    `<prefix>_KEEP_DELETED`."""
    tombstone: frozenset[str]
    """The names a deleted job's directory keeps (what `get` and the sweep read)."""
    ended_at: EndedAt
    still_runs: StillRuns
    noun: str = "job"
    """How the log line names the jobs: `removed 3 <noun> job directories ...`."""

    @property
    def retention_env(self) -> str:
        """The variable holding the retention in seconds."""
        return f"{self.env_prefix}_RETENTION_SECONDS"

    @property
    def keep_deleted_env(self) -> str:
        """The variable that, set, keeps a deleted job's files."""
        return f"{self.env_prefix}_KEEP_DELETED"

    def retention(self) -> Optional[float]:
        """Seconds a terminal job's directory is kept; None when the sweep is off."""
        raw = os.environ.get(self.retention_env, "").strip().lower()
        if not raw:
            return DEFAULT_RETENTION
        if raw == "off":
            return None
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not 0 <= value < float("inf"):
            raise UsageError(
                f"{self.retention_env}={raw!r} is not a number of seconds >= 0 (or 'off')"
            )
        return value

    def keep_deleted(self) -> bool:
        """True when `delete` must leave the job's files in place."""
        return os.environ.get(self.keep_deleted_env, "").strip().lower() in ("1", "true", "yes")

    def discard(self, job_dir: Path) -> None:
        """Remove a deleted job's files, keeping the tombstone `get` and the sweep need."""
        if self.keep_deleted():
            return
        for entry in os.scandir(job_dir):
            if entry.name in self.tombstone:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass

    def sweep(self, bases: Iterable[Path], keep: float, now: Optional[float] = None) -> int:
        """Remove this user's job directories under `bases` whose job ended more than
        `keep` seconds ago and no longer runs; returns how many were removed."""
        now = time.time() if now is None else now
        runs: Optional[Callable[[Path], bool]] = None
        removed = 0
        for base in bases:
            try:
                entries = [Path(e.path) for e in os.scandir(base)]
            except OSError:
                continue
            for path in entries:
                ended = self.ended_at(path) if _owned_dir(path) else None
                if ended is None or now - ended < keep:
                    continue
                if runs is None:
                    runs = self.still_runs()
                if runs(path):
                    continue
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        if removed:
            log.info("removed %d %s job directories older than %gs", removed, self.noun, keep)
        return removed


def _owned_dir(path: Path) -> bool:
    """True for a real directory (not a symlink) this user owns."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()


class Sweeper:
    """Sweeps the job directories under the bases a connector used, at most once a
    `SWEEP_EVERY` seconds; one per connector instance, safe across threads."""

    def __init__(self, policy: RetentionPolicy, home: Callable[[], Path]) -> None:
        """`home` is the base always swept (the plugin's state directory), so a restarted
        daemon also clears what its predecessor left there."""
        self._policy = policy
        self._home = home
        self._lock = threading.Lock()
        self._bases: set[Path] = set()
        self._last = 0.0

    def remember(self, base: Path) -> None:
        """A directory that holds job directories (the state dir, a local output prefix)."""
        with self._lock:
            self._bases.add(base)

    def maybe_sweep(self) -> int:
        """Sweep when due; a bad retention setting is a `UsageError` on every call, so
        `create` reports it before a job starts."""
        keep = self._policy.retention()
        with self._lock:
            now = time.monotonic()
            if keep is None or now - self._last < SWEEP_EVERY:
                return 0
            self._last = now
            bases = sorted(self._bases | {self._home()})
        return self._policy.sweep(bases, keep)
