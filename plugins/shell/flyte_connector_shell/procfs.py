"""Linux /proc: identify a job's processes, measure them and terminate them.

A job is the wrapper process started in a new session plus everything it spawned. Every
one of them inherits the job's marker (`FLYTE_CONNECTOR_SHELL_JOB=<nonce>`, the nonce
the daemon wrote into the job directory) in its environment, which finds `setsid`
grandchildren whose parent has gone too. PIDs are reused, so the wrapper only counts as
ours when its start time (clock ticks since boot, field 22 of /proc/PID/stat) matches
the fingerprint taken at create time and the host has not rebooted since (boot id).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path
from typing import Iterable, Optional

from flyte_connector_shell.spec import DEFAULT_GRACE, MAX_GRACE

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MARKER_ENV = "FLYTE_CONNECTOR_SHELL_JOB"


@dataclasses.dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/PID/stat this package needs."""

    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int
    cpu_ticks: int
    start_ticks: int
    rss_pages: int

    @property
    def alive(self) -> bool:
        """False for zombies and dead tasks, which hold no resources and run no code."""
        return self.state not in ("Z", "X", "x")


def read_stat(pid: int) -> Optional[ProcStat]:
    """Parse /proc/PID/stat, or None when the process does not exist (any more)."""
    try:
        raw = (PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    # fields[0] is field 3 (state); utime, stime, cutime, cstime are fields 14-17.
    cpu = sum(int(f) for f in fields[11:15])
    return ProcStat(
        pid=pid,
        state=fields[0].decode(),
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        session=int(fields[3]),
        cpu_ticks=cpu,
        start_ticks=int(fields[19]),
        rss_pages=int(fields[21]),
    )


def boot_id() -> str:
    """This boot's id: start ticks only identify a process within one boot."""
    try:
        return (PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def is_running(pid: int, start_ticks: int, boot: str, nonce: str) -> bool:
    """True when PID is still the (non-zombie) wrapper fingerprinted at create time and
    started with the job's marker."""
    if pid <= 1 or not nonce or (boot and boot != boot_id()):
        return False
    stat = read_stat(pid)
    return (stat is not None and stat.start_ticks == start_ticks and stat.alive
            and carries(pid, marker(nonce)))


def _all_stats() -> Iterable[ProcStat]:
    for entry in os.scandir(PROC):
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                yield stat


def marker(nonce: str) -> bytes:
    """The environment entry every process of a job inherits from its wrapper."""
    return f"{MARKER_ENV}={nonce}".encode()


def carries(pid: int, entry: bytes) -> bool:
    """True when the process's environment holds `entry` (as started; a process that
    scrubbed its environment is found through its parent instead)."""
    try:
        environ = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    return entry in environ.split(b"\0")


def wait_marked(pid: int, nonce: str, timeout: float = 5.0) -> bool:
    """Wait until a just-spawned wrapper shows its marker: while the kernel is still
    setting up the exec, /proc/PID/environ reads empty."""
    entry, deadline = marker(nonce), time.monotonic() + timeout
    while not carries(pid, entry):
        stat = read_stat(pid)
        if stat is None or not stat.alive or time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def job_processes(leader: int, start_ticks: int, boot: str, *, nonce: str) -> list[ProcStat]:
    """The live processes of the job whose wrapper was started with marker `nonce`.

    Members are processes carrying the job's marker in their environment, processes
    in the wrapper's session or process group while the wrapper itself is alive and
    marked (so the session id is the job's), and descendants of any member by parent
    links, `setsid` ones included. PID 1, this process and anything started before the
    job are never members; without a nonce there is no job (no fallback).
    """
    if not nonce or (boot and boot != boot_id()):
        return []
    holder = read_stat(leader) if leader > 1 else None
    if holder is not None and holder.start_ticks != start_ticks:
        return []  # the wrapper's PID is someone else's now: the job is gone
    entry, me = marker(nonce), os.getpid()
    stats = [s for s in _all_stats() if s.pid > 1 and s.pid != me and s.start_ticks >= start_ticks]
    members = {s.pid: s for s in stats if carries(s.pid, entry)}
    head = members.get(leader) if leader > 1 else None
    if head is not None and head.start_ticks == start_ticks:
        members.update((s.pid, s) for s in stats if leader in (s.session, s.pgrp))
    children: dict[int, list[ProcStat]] = {}
    for stat in stats:
        children.setdefault(stat.ppid, []).append(stat)
    todo = list(members.values())
    while todo:
        stat = todo.pop()
        for child in children.get(stat.pid, ()):
            if child.pid not in members:
                members[child.pid] = child
                todo.append(child)
    return [s for s in members.values() if s.alive]


def running_markers() -> set[bytes]:
    """The job markers (nonces) carried by live processes now: one /proc pass for a sweep."""
    prefix = MARKER_ENV.encode() + b"="
    found: set[bytes] = set()
    for stat in _all_stats():
        if not stat.alive or stat.pid <= 1:
            continue
        try:
            environ = (PROC / str(stat.pid) / "environ").read_bytes()
        except OSError:
            continue
        found.update(e[len(prefix):] for e in environ.split(b"\0") if e.startswith(prefix))
    return found


def _send(stat: ProcStat, sig: int) -> None:
    """Signal exactly the process scanned: through a pidfd checked against its start time,
    so a PID reused since the scan is never hit."""
    if stat.pid <= 1 or stat.pid == os.getpid():
        return
    try:
        fd = os.pidfd_open(stat.pid)
    except (ProcessLookupError, PermissionError):
        return
    except OSError:
        fd = -1
    try:
        now = read_stat(stat.pid)
        if now is None or now.start_ticks != stat.start_ticks:
            return
        if fd >= 0:
            signal.pidfd_send_signal(fd, sig)
        else:
            os.kill(stat.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    finally:
        if fd >= 0:
            os.close(fd)


def signal_all(processes: Iterable[ProcStat], sig: int) -> None:
    """Send `sig` to each process, ignoring those that are already gone."""
    for stat in processes:
        _send(stat, sig)


def terminate(leader: int, start_ticks: int, boot: str, grace: float, *, nonce: str) -> int:
    """SIGTERM the job's processes, then SIGKILL what is left after `grace` seconds
    (bounded to `MAX_GRACE`).

    Returns how many processes had to be killed. Processes spawned between the scan and
    the signal are caught by the next scan.
    """
    grace = min(grace, MAX_GRACE) if grace >= 0 else DEFAULT_GRACE  # NaN too
    deadline = time.monotonic() + grace
    targets = job_processes(leader, start_ticks, boot, nonce=nonce)
    told: set[int] = set()
    while targets:
        signal_all([t for t in targets if t.pid not in told], signal.SIGTERM)
        told.update(t.pid for t in targets)
        if time.monotonic() >= deadline:
            break
        time.sleep(0.02)
        targets = job_processes(leader, start_ticks, boot, nonce=nonce)
    killed = 0
    for _ in range(50):
        if not targets:
            break
        killed += len(targets)
        signal_all(targets, signal.SIGKILL)
        time.sleep(0.01)
        targets = job_processes(leader, start_ticks, boot, nonce=nonce)
    return killed


@dataclasses.dataclass(frozen=True)
class Usage:
    """Resource use of a job's live processes at one moment."""

    processes: int
    cpu_seconds: float
    rss_bytes: int


def usage(processes: list[ProcStat]) -> Usage:
    """CPU time (incl. reaped children) and summed resident memory of `processes`."""
    return Usage(
        processes=len(processes),
        cpu_seconds=sum(p.cpu_ticks for p in processes) / CLOCK_TICKS,
        rss_bytes=sum(p.rss_pages for p in processes) * PAGE_SIZE,
    )
