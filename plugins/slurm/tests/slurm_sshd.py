"""A throwaway OpenSSH server on a free loopback port, playing the cluster's login node.

Its host key and the client's key are generated per session; root may log in with the key
only (`PermitRootLogin prohibit-password`); `SetEnv SLURM_CONF` points login sessions at the
test cluster, as /etc/slurm/slurm.conf would on a real login node.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

SSHD = "/usr/sbin/sshd"


def missing_reason() -> Optional[str]:
    """Why no sshd can start here, or None."""
    if not os.path.exists(SSHD):
        return "openssh-server is not installed; `make slurm` installs it"
    return None


@dataclasses.dataclass
class Sshd:
    """A running sshd and the credentials a client needs."""

    port: int
    private_key: str
    known_hosts: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _key(path: Path) -> tuple[str, str]:
    """A new ed25519 key written to `path` (0600): (private OpenSSH text, public line)."""
    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519")
    private = key.export_private_key().decode()
    path.write_text(private)
    path.chmod(0o600)
    return private, key.export_public_key().decode().strip()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def start_sshd(root: Path, slurm_conf: Path) -> Sshd:
    """sshd -D on 127.0.0.1 with generated keys; returns once it accepts connections."""
    root.mkdir(parents=True, exist_ok=True)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    _, host_public = _key(root / "host_key")
    client_private, client_public = _key(root / "client_key")
    (root / "authorized_keys").write_text(client_public + "\n")
    port = _free_port()
    config = root / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {root}/host_key",
        f"PidFile {root}/sshd.pid", f"AuthorizedKeysFile {root}/authorized_keys",
        "PermitRootLogin prohibit-password", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
        "Subsystem sftp internal-sftp", f"SetEnv SLURM_CONF={slurm_conf}", "",
    ]))
    log = root / "sshd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Sshd(port, client_private, f"[127.0.0.1]:{port} {host_public}\n", proc, log)
    deadline = time.monotonic() + 20
    while not _listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"sshd did not start: {log.read_text()[-800:]}")
        time.sleep(0.1)
    return server
