"""A throwaway single-node Slurm cluster for the tests, run as root in a temp directory.

munged (own key and socket), slurmctld -D and slurmd -D run as child processes on free
loopback ports (`CommunicationParameters=NoInAddrAny,NoCtldInAddrAny`: `NoInAddrAny` binds
slurmd and the commands to 127.0.0.1 only, `NoCtldInAddrAny` slurmctld) with a generated
slurm.conf: `proctrack/linuxproc` and `task/none` need no cgroups, there is no
accounting, and `MinJobAge=2` lets finished jobs leave slurmctld within seconds. The node
claims 8 CPUs (`SlurmdParameters=config_overrides`) so a few test jobs run side by side on
a small machine. Tests reach it through `SLURM_CONF`.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import NoReturn, Optional

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch")
NODE = "testnode"
PARTITION = "debug"
NODE_CPUS = 8
CLUSTER = "flytetest"


def unavailable(message: str) -> NoReturn:
    """Under CI a missing Slurm is a failure (`make test` installs it), else a skip."""
    import pytest

    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def missing_reason() -> Optional[str]:
    """Why a cluster cannot start here, or None."""
    missing = [name for name in DAEMONS if not _which(name)]
    if missing:
        return (f"Slurm is not installed ({', '.join(missing)} missing); `make slurm` installs "
                "Debian's slurm-wlm and munge")
    if os.geteuid() != 0:
        return "the throwaway Slurm cluster runs its daemons as root; run the tests as root"
    return None


def _which(name: str) -> Optional[str]:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return max(1024, int(line.split()[1]) // 1024 - 256)
    return 2048


SLURM_CONF = """\
ClusterName={cluster}
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge.sock
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=1
{accounting}JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=64
MinJobAge=2
KillWait=2
ReturnToService=2
MailProg=/bin/true
MpiDefault=none
SwitchType=switch/none
SlurmctldDebug=info
SlurmdDebug=info
NodeName={node} NodeAddr=127.0.0.1 NodeHostname=localhost CPUs={cpus} RealMemory={memory} \
State=UNKNOWN
PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


@dataclasses.dataclass
class SlurmCluster:
    """A running cluster: its directory, config file and daemon processes."""

    root: Path
    conf: Path
    procs: list[subprocess.Popen]
    db_password: str = dataclasses.field(default_factory=lambda: secrets.token_hex(12))

    @property
    def env(self) -> dict[str, str]:
        """The environment for Slurm commands pointed at this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str) -> subprocess.CompletedProcess:
        """A Slurm command against this cluster, bounded in time."""
        return subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=30)

    def node_state(self) -> str:
        return self.run("sinfo", "-h", "-n", NODE, "-o", "%T").stdout.strip()

    def log_tail(self) -> str:
        """The end of the daemons' logs, for a failure message."""
        texts = []
        for name in ("slurmctld.log", "slurmd.log", "munged.log", "slurmdbd.log", "db.log"):
            path = self.root / name
            if path.exists():
                texts.append(f"--- {name}\n" + "\n".join(path.read_text().splitlines()[-15:]))
        return "\n".join(texts)

    def stop(self) -> None:
        """Cancel every job and let it end, then SIGTERM the daemons by pid (SIGKILL what
        lingers), and SIGKILL any slurmstepd of this cluster that outlived slurmd."""
        if self.procs and all(proc.poll() is None for proc in self.procs):
            self.run("scancel", "--user=root")
            deadline = time.monotonic() + 20
            while self.run("squeue", "-h", "-o", "%i").stdout.strip():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for pid in stepds_of(self.conf):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def stepds_of(conf: Path) -> list[int]:
    """Pids of slurmstepd processes started by this cluster's slurmd (by their SLURM_CONF)."""
    marker = f"SLURM_CONF={conf}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "cmdline").read_bytes().startswith(b"slurmstepd"):
                continue
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _spawn(argv: list[str], root: Path, name: str, env: dict[str, str]) -> subprocess.Popen:
    out = open(root / f"{name}.out", "wb")
    with out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _wait(condition: object, timeout: float, cluster: SlurmCluster, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        for proc in cluster.procs:
            if proc.poll() is not None:
                cluster.stop()
                raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode}) while waiting "
                                   f"for {what}\n{cluster.log_tail()}")
        if time.monotonic() > deadline:
            cluster.stop()
            raise RuntimeError(f"Slurm: no {what} after {timeout:g}s\n{cluster.log_tail()}")
        time.sleep(0.2)


NO_ACCOUNTING = "AccountingStorageType=accounting_storage/none\n"
ACCOUNTING = """\
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort={dbd_port}
AccountingStoragePass={root}/munge.sock
"""
SLURMDBD_CONF = """\
AuthType=auth/munge
AuthInfo=socket={root}/munge.sock
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={dbd_port}
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={db_port}
StorageUser=slurm
StoragePass={password}
StorageLoc=slurm_acct_db
LogFile={root}/slurmdbd.log
PidFile={root}/slurmdbd.pid
DebugLevel=info
"""


def accounting_missing() -> Optional[str]:
    """Why no accounting (MariaDB + slurmdbd) can start here, or None."""
    missing = [name for name in ("slurmdbd", "mariadbd", "mariadb-install-db", "mariadb")
               if not _which(name)]
    if missing:
        return (f"Slurm accounting is not installed ({', '.join(missing)} missing); "
                "`make slurm` installs slurmdbd and mariadb-server")
    return None


def _start_database(cluster: SlurmCluster, env: dict[str, str]) -> int:
    """A MariaDB server for slurmdbd on a free loopback port; returns the port."""
    root = cluster.root
    done = subprocess.run(
        [_which("mariadb-install-db") or "mariadb-install-db", "--no-defaults",
         f"--datadir={root}/db", "--user=root", "--auth-root-authentication-method=socket",
         "--skip-test-db"], capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"mariadb-install-db failed: {done.stderr[-500:]}")
    port = free_port()
    cluster.procs.append(_spawn(
        [_which("mariadbd") or "mariadbd", "--no-defaults", f"--datadir={root}/db",
         f"--socket={root}/db.sock", f"--port={port}", "--bind-address=127.0.0.1",
         "--user=root", f"--pid-file={root}/db.pid", f"--log-error={root}/db.log"],
        root, "mariadbd", env))
    client = [_which("mariadb") or "mariadb", "--no-defaults", f"--socket={root}/db.sock",
              "-uroot"]
    _wait(lambda: subprocess.run([*client, "-e", "select 1"], capture_output=True,
                                 timeout=30).returncode == 0, 60, cluster, "MariaDB")
    grants = "".join(
        f"CREATE USER 'slurm'@'{host}' IDENTIFIED BY '{cluster.db_password}';"
        f"GRANT ALL ON slurm_acct_db.* TO 'slurm'@'{host}';" for host in ("127.0.0.1", "localhost"))
    subprocess.run([*client, "-e", grants], check=True, capture_output=True, timeout=30)
    return port


def _start_slurmdbd(cluster: SlurmCluster, env: dict[str, str], dbd_port: int) -> None:
    db_port = _start_database(cluster, env)
    conf = cluster.root / "slurmdbd.conf"
    conf.write_text(SLURMDBD_CONF.format(root=cluster.root, dbd_port=dbd_port, db_port=db_port,
                                         password=cluster.db_password))
    conf.chmod(0o600)
    cluster.procs.append(_spawn([_which("slurmdbd") or "slurmdbd", "-D"], cluster.root,
                                "slurmdbd", env))
    _wait(lambda: _listening(dbd_port), 60, cluster, "slurmdbd")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def start_cluster(root: Path, accounting: bool = False) -> SlurmCluster:
    """munged, slurmctld and slurmd under `root` (and MariaDB + slurmdbd with
    `accounting`); returns once the node is idle."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o711)
    for sub in ("state", "spool"):
        (root / sub).mkdir(exist_ok=True)
    key = root / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o600)
    conf = root / "slurm.conf"
    dbd_port = free_port()
    storage = ACCOUNTING.format(dbd_port=dbd_port, root=root) if accounting else NO_ACCOUNTING
    conf.write_text(SLURM_CONF.format(
        cluster=CLUSTER, root=root, ctld_port=free_port(), slurmd_port=free_port(), node=NODE,
        cpus=NODE_CPUS, memory=_memory_mb(), partition=PARTITION,
        accounting=storage))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = SlurmCluster(root, conf, [])
    cluster.procs.append(_spawn(
        [_which("munged") or "munged", "-F", "-f", f"--key-file={key}",
         f"--socket={root}/munge.sock", f"--pid-file={root}/munged.pid",
         f"--log-file={root}/munged.log", f"--seed-file={root}/munged.seed"], root, "munged", env))
    _wait(lambda: (root / "munge.sock").exists(), 20, cluster, "munge socket")
    if accounting:
        _start_slurmdbd(cluster, env, dbd_port)
    cluster.procs.append(_spawn([_which("slurmctld") or "slurmctld", "-D", "-f", str(conf)],
                                root, "slurmctld", env))
    _wait(lambda: cluster.run("scontrol", "ping").returncode == 0, 30, cluster, "slurmctld")
    cluster.procs.append(_spawn([_which("slurmd") or "slurmd", "-D", "-N", NODE, "-f", str(conf)],
                                root, "slurmd", env))
    _wait(lambda: cluster.node_state() == "idle", 60, cluster, "idle node")
    return cluster
