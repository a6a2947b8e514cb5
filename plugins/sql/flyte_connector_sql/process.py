"""Start, recognise and stop the detached worker process of a job.

A job is found again by pid plus a start-time fingerprint (`/proc/<pid>/stat` field 22),
so a recycled pid is never mistaken for the worker, never signalled. The worker runs in
its own session, so a Ctrl-C or restart of the daemon does not touch it. Before any
signal the process must also be that job's worker by its own record: its command line is
`python -m flyte_connector_sql.worker JOB_DIR` for the job's directory, and it leads its
own session. PID 1 and the daemon itself never are.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from connector_cli.errors import ConnectorError

WORKER_MODULE = "flyte_connector_sql.worker"


class WorkerStartError(ConnectorError):
    """The worker process could not be started at all."""


def start_ticks(pid: int) -> Optional[int]:
    """The process start time in clock ticks since boot, or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    except OSError:
        return None
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def is_alive(pid: int, ticks: int) -> bool:
    """True while the very process that was started (same pid and start time) runs."""
    if not os.path.isdir("/proc"):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return start_ticks(pid) == ticks


def _cmdline(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[:-1]
    except OSError:
        return []


def _session(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None


def is_worker(pid: int, ticks: int, job_dir: str) -> bool:
    """True when `pid` is the live worker (same start time) of the job in `job_dir`."""
    if pid <= 1 or pid == os.getpid() or not job_dir:
        return False
    if start_ticks(pid) != ticks:
        return False
    args = _cmdline(pid)
    return (args[1:] == [b"-m", WORKER_MODULE.encode(), os.fsencode(job_dir)]
            and _session(pid) == pid)


def live_job_dirs() -> set[str]:
    """The job directories of every worker running now (one /proc pass, for the sweep)."""
    found: set[str] = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            args = _cmdline(int(entry.name))
            if args[1:3] == [b"-m", WORKER_MODULE.encode()] and len(args) == 4:
                found.add(os.fsdecode(args[3]))
    return found


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll `check` until it is true or `timeout` seconds pass; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def spawn_worker(
    job_dir: Path, secret: dict[str, Any], handshake_timeout: float
) -> tuple[int, int, dict[str, Any]]:
    """Start `python -m flyte_connector_sql.worker JOB_DIR` and wait for its first line.

    The secret travels on stdin (never argv, environment or a file). Returns pid, start
    fingerprint and the handshake (e.g. the PostgreSQL backend pid), or an empty
    handshake if the worker has not connected within `handshake_timeout` seconds.
    """
    with open(job_dir / "worker.log", "ab") as log:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", WORKER_MODULE, str(job_dir)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                start_new_session=True, close_fds=True, cwd=str(job_dir),
            )
        except OSError as exc:
            raise WorkerStartError(f"cannot start the SQL worker: {exc.strerror}") from None
    ticks = start_ticks(proc.pid) or 0
    threading.Thread(target=proc.wait, name=f"sql-worker-{proc.pid}", daemon=True).start()
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps(secret).encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    handshake = _read_handshake(proc.stdout, handshake_timeout)
    proc.stdout.close()
    return proc.pid, ticks, handshake


def _read_handshake(stream: Any, timeout: float) -> dict[str, Any]:
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(timeout):
            return {}
    line = stream.readline()
    try:
        data = json.loads(line) if line else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def stop(pid: int, ticks: int, grace: float, *, job_dir: str) -> bool:
    """SIGTERM the job's worker, SIGKILL it after `grace` seconds; True once it is gone.

    Only the worker of `job_dir` (see `is_worker`) is ever signalled."""
    if not is_worker(pid, ticks, job_dir):
        return True
    _signal(pid, ticks, job_dir, signal.SIGTERM)
    if wait_until(lambda: not is_alive(pid, ticks), grace):
        return True
    _signal(pid, ticks, job_dir, signal.SIGKILL)
    return wait_until(lambda: not is_alive(pid, ticks), 1.0)


def _signal(pid: int, ticks: int, job_dir: str, sig: int) -> None:
    """Signal through a pidfd opened before the identity check, so a PID reused since
    the check is never hit."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if is_worker(pid, ticks, job_dir):
            signal.pidfd_send_signal(fd, sig)
    except (ProcessLookupError, PermissionError):
        pass
    finally:
        os.close(fd)
