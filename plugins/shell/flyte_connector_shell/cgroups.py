"""A cgroup v2 per shell job, where the host lets the daemon make one.

Processes are found by the nonce in their environment and by the job's session, which a
child can shed: one started under `env -i` whose parent has exited carries neither, and
survived delete (issue 28). A cgroup is something a job cannot leave (moving a process
out needs write access to another cgroup, which a job of an unprivileged daemon lacks):
when the daemon's own cgroup is writable (cgroup v2, delegated to its user or as root),
each job gets a child cgroup `flyte-shell-<nonce prefix>`, the wrapper moves itself into
it before starting the command, and delete signals every process in it (SIGTERM, then
`cgroup.kill` after the grace). Elsewhere, or with `FLYTE_CONNECTOR_SHELL_CGROUPS=off`,
the process scan alone is used. `mode()` says which is in force.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import time
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

ENV = "FLYTE_CONNECTOR_SHELL_CGROUPS"
PREFIX = "flyte-shell-"
SWEEP_EVERY = 600.0  # seconds between sweeps of lost jobs' empty cgroups (`sweep`)


@functools.cache
def base() -> Optional[Path]:
    """The daemon's own cgroup v2 directory when jobs can get cgroups under it, else None."""
    if os.environ.get(ENV, "auto").lower() in ("off", "0", "false", "no"):
        return None
    mount = _cgroup2_mount()
    try:
        own = next(line[3:].strip() for line in Path("/proc/self/cgroup").read_text().splitlines()
                   if line.startswith("0::"))
    except (OSError, StopIteration):
        return None
    if mount is None:
        return None
    path = Path(mount, own.lstrip("/"))
    if not (os.access(path, os.W_OK) and os.access(path / "cgroup.procs", os.W_OK)):
        return None
    return path


def _cgroup2_mount() -> Optional[str]:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(" - ")
        if len(fields) == 2 and fields[1].split()[0] == "cgroup2":
            return fields[0].split()[4]
    return None


def mode() -> str:
    """How jobs are tracked, for the log and docs: 'cgroup v2 (PATH)' or 'process scan'."""
    found = base()
    return f"cgroup v2 ({found})" if found is not None else "process scan"


def make(nonce: str) -> str:
    """A new cgroup for the job with `nonce` ('' when cgroups are not in force)."""
    parent = base()
    if parent is None:
        return ""
    path = parent / f"{PREFIX}{nonce[:16]}"
    try:
        path.mkdir()
    except OSError as exc:
        log.warning("cannot create a cgroup for a shell job (%s); tracking by process scan",
                    exc.strerror)
        return ""
    return str(path)


def checked(path: str) -> Optional[Path]:
    """A meta's cgroup when it is one of ours under this daemon's cgroup, else None."""
    parent = base()
    if not path or parent is None:
        return None
    candidate = Path(path)
    if candidate.parent != parent or not candidate.name.startswith(PREFIX):
        return None
    return candidate


def join(path: str) -> None:
    """Move the calling process into the cgroup `path` (the wrapper, before the command)."""
    if path:
        try:
            Path(path, "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            pass  # the process scan still tracks the job


def members(path: Path) -> list[int]:
    """The processes in the cgroup."""
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def signal_members(path: Path, signum: int) -> None:
    """Send `signum` to every process in the cgroup."""
    for pid in members(path):
        _signal(pid, signum)


def terminate(path: Path, grace: float) -> int:
    """SIGTERM every process in the cgroup, kill what is left after `grace`, remove the
    cgroup; how many had to be killed."""
    signal_members(path, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while members(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    left = len(members(path))
    if left:
        try:
            (path / "cgroup.kill").write_text("1")
        except OSError:
            for pid in members(path):
                _signal(pid, signal.SIGKILL)
    remove(path)
    return left


def remove(path: Path, wait: float = 1.0) -> None:
    """Remove the cgroup once it is empty, waiting up to `wait` seconds for its killed
    processes to be reaped; one still in use stays (a later delete removes it)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.01)


def sweep(min_age: float = 300.0) -> int:
    """Remove the empty job cgroups made at least `min_age` seconds ago: those of jobs that
    ended without being polled to the end or deleted (a lost job's). A cgroup with
    processes stays, and so does a young one (a job being created moves into it); how
    many went."""
    root = base()
    if root is None:
        return 0
    removed = 0
    now = time.time()
    for path in root.glob(PREFIX + "*"):
        try:
            if now - path.stat().st_mtime < min_age or members(path):
                continue
            path.rmdir()
        except OSError:
            continue
        removed += 1
    return removed


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
