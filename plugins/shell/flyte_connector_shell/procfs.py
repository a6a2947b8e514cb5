"""Linux /proc: identify a job's processes, measure them and terminate them.

A job is the wrapper process started in a new session plus everything it spawned. PIDs
are reused, so a process only counts as ours when its start time (clock ticks since
boot, field 22 of /proc/PID/stat) matches the fingerprint taken at create time and the
host has not rebooted since (boot id).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path
from typing import Iterable, Optional

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


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


def is_running(pid: int, start_ticks: int, boot: str) -> bool:
    """True when PID is still the (non-zombie) process fingerprinted at create time."""
    if boot and boot != boot_id():
        return False
    stat = read_stat(pid)
    return stat is not None and stat.start_ticks == start_ticks and stat.alive


def _all_stats() -> Iterable[ProcStat]:
    for entry in os.scandir(PROC):
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                yield stat


def job_processes(leader: int, start_ticks: int, boot: str) -> list[ProcStat]:
    """The live processes of the job whose wrapper (session leader) is `leader`.

    Members are processes in the leader's session or process group, and descendants of
    the leader that moved to a session of their own. When another process holds the
    leader's PID, the job is entirely gone: Linux never reuses a PID that is still the id
    of a session or process group.
    """
    if boot and boot != boot_id():
        return []
    holder = read_stat(leader)
    if holder is not None and holder.start_ticks != start_ticks:
        return []
    stats = [s for s in _all_stats() if s.start_ticks >= start_ticks]
    children: dict[int, list[ProcStat]] = {}
    for stat in stats:
        children.setdefault(stat.ppid, []).append(stat)
    members = {s.pid: s for s in stats if leader in (s.session, s.pgrp)}
    leader_stat = next((s for s in stats if s.pid == leader and s.start_ticks == start_ticks), None)
    todo = [leader_stat] if leader_stat else []
    while todo:
        stat = todo.pop()
        members[stat.pid] = stat
        todo.extend(c for c in children.get(stat.pid, ()) if c.pid not in members)
    return [s for s in members.values() if s.alive]


def signal_all(processes: Iterable[ProcStat], sig: int) -> None:
    """Send `sig` to each process, ignoring those that are already gone."""
    for stat in processes:
        try:
            os.kill(stat.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def terminate(leader: int, start_ticks: int, boot: str, grace: float) -> int:
    """SIGTERM the job's processes, then SIGKILL what is left after `grace` seconds.

    Returns how many processes had to be killed. Processes spawned between the scan and
    the signal are caught by the next scan.
    """
    deadline = time.monotonic() + grace
    targets = job_processes(leader, start_ticks, boot)
    told: set[int] = set()
    while targets:
        signal_all([t for t in targets if t.pid not in told], signal.SIGTERM)
        told.update(t.pid for t in targets)
        if time.monotonic() >= deadline:
            break
        time.sleep(0.02)
        targets = job_processes(leader, start_ticks, boot)
    killed = 0
    for _ in range(50):
        if not targets:
            break
        killed += len(targets)
        signal_all(targets, signal.SIGKILL)
        time.sleep(0.01)
        targets = job_processes(leader, start_ticks, boot)
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
