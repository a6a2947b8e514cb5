"""The test cluster's daemons listen on loopback only (issue 28, item 20: `NoInAddrAny`
does not cover slurmctld; `NoCtldInAddrAny` does)."""

from __future__ import annotations

import os
from pathlib import Path

from slurm_cluster import SlurmCluster

ANY = {"00000000", "00000000000000000000000000000000"}


def listening(pid: int) -> list[tuple[str, int]]:
    """(hex local address, port) of the TCP sockets process `pid` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port = fields[1].split(":")
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                found.append((address, int(port, 16)))
    return found


def test_slurmctld_and_slurmd_listen_on_loopback_only(slurm: SlurmCluster) -> None:
    sockets = {proc.args[0]: listening(proc.pid) for proc in slurm.procs}
    ctld = [s for name, s in sockets.items() if name.endswith("slurmctld")]
    assert ctld and ctld[0], sockets
    wildcard = {name: s for name, s in sockets.items() if any(a in ANY for a, _ in s)}
    assert not wildcard, f"listening on all interfaces: {wildcard}"
