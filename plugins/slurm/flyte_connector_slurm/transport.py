"""How the connector reaches the cluster: local commands, or SSH to a login node.

Both implement `Transport`: run a Slurm command given as an argv list (stdin optional) and
read part of a file. Locally the argv goes straight to `exec`; over SSH each element is
`shlex.quote`d for the remote login shell, and files are read over SFTP. A transport lives
for one connector call: nothing is kept between calls.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import os
import re
import shlex
from pathlib import Path
from typing import Any, Optional, Sequence

from connector_cli.errors import ConnectorError


class SlurmUnavailable(ConnectorError):
    """The cluster cannot be reached: a missing command, a refused SSH login, a timeout."""


@dataclasses.dataclass(frozen=True)
class Completed:
    """A finished command: exit status and decoded output."""

    returncode: int
    stdout: str
    stderr: str

    def error_line(self) -> str:
        """The command's stderr on one line, without the 'sbatch: error:' prefixes."""
        lines = []
        for line in self.stderr.strip().splitlines():
            text = re.sub(r"^\w+: (error|fatal): ", "", line.strip()).strip()
            if text and text not in lines:
                lines.append(text)
        joined = "; ".join(lines) or f"exit status {self.returncode}"
        return joined if len(joined) <= 300 else joined[:297] + "..."


class Transport(abc.ABC):
    """Run Slurm commands and read job files on the cluster."""

    timeout: float = 60.0
    kind: str = ""

    @abc.abstractmethod
    async def run(self, argv: Sequence[str], stdin: str = "") -> Completed:
        """Run one command; a missing command or a timeout raises `SlurmUnavailable`."""

    @abc.abstractmethod
    async def read(self, path: str, offset: int, size: int) -> Optional[bytes]:
        """Up to `size` bytes of `path` from `offset`, or None when the file does not exist."""

    @abc.abstractmethod
    async def size(self, path: str) -> Optional[int]:
        """The size of `path` in bytes, or None when it does not exist."""

    @abc.abstractmethod
    async def makedirs(self, path: str) -> None:
        """Create a directory and its parents (an existing one is fine)."""

    @abc.abstractmethod
    async def home(self) -> str:
        """The login user's home directory (relative job roots are resolved against it)."""

    async def close(self) -> None:  # noqa: B027 - most transports hold nothing to release
        """Release the connection, if any."""

    async def __aenter__(self) -> "Transport":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class LocalTransport(Transport):
    """Slurm commands on this host: the daemon runs on a login node."""

    kind = "local"

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout

    async def run(self, argv: Sequence[str], stdin: str = "") -> Completed:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError:
            raise SlurmUnavailable(
                f"{argv[0]} not found on this host's PATH: install the Slurm client commands "
                "on the daemon host, or reach a login node over SSH (transport: ssh)"
            ) from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), self.timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise SlurmUnavailable(f"{argv[0]} did not answer within {self.timeout:g}s") from None
        return Completed(proc.returncode or 0, out.decode(errors="replace"),
                         err.decode(errors="replace"))

    async def read(self, path: str, offset: int, size: int) -> Optional[bytes]:
        return await asyncio.to_thread(_read_local, path, offset, size)

    async def size(self, path: str) -> Optional[int]:
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            return None

    async def makedirs(self, path: str) -> None:
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise SlurmUnavailable(f"cannot create {path}: {exc.strerror}") from None

    async def home(self) -> str:
        return str(Path.home())


def _read_local(path: str, offset: int, size: int) -> Optional[bytes]:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(size)
    except FileNotFoundError:
        return None


@dataclasses.dataclass(frozen=True)
class SshCredentials:
    """A private key and the known-hosts text that must vouch for the login node."""

    private_key: str
    known_hosts: str


class SshTransport(Transport):
    """Slurm commands on a login node over SSH (asyncssh), host keys always checked."""

    kind = "ssh"

    def __init__(self, host: str, port: int, user: Optional[str], credentials: SshCredentials,
                 timeout: float = 60.0) -> None:
        self.host, self.port, self.user = host, port, user
        self.credentials = credentials
        self.timeout = timeout
        self._conn: Any = None
        self._sftp: Any = None

    async def _connection(self) -> Any:
        if self._conn is None:
            import asyncssh

            try:
                key = asyncssh.import_private_key(self.credentials.private_key)
                known = asyncssh.import_known_hosts(self.credentials.known_hosts)
            except (asyncssh.KeyImportError, ValueError) as exc:
                raise SlurmUnavailable(f"SSH credentials for {self.host} are unusable: "
                                       f"{type(exc).__name__}") from None
            try:
                self._conn = await asyncio.wait_for(asyncssh.connect(
                    self.host, self.port, username=self.user or os.environ.get("USER"),
                    client_keys=[key], known_hosts=known, agent_path=None,
                    config=None, connect_timeout=self.timeout,
                ), self.timeout)
            except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
                raise SlurmUnavailable(f"cannot log in to {self.host}:{self.port} over SSH: "
                                       f"{_ssh_reason(exc)}") from None
        return self._conn

    async def run(self, argv: Sequence[str], stdin: str = "") -> Completed:
        conn = await self._connection()
        command = " ".join(shlex.quote(arg) for arg in argv)
        try:
            result = await asyncio.wait_for(conn.run(command, input=stdin, check=False),
                                            self.timeout)
        except asyncio.TimeoutError:
            raise SlurmUnavailable(f"{argv[0]} on {self.host} did not answer within "
                                   f"{self.timeout:g}s") from None
        status = result.exit_status if result.exit_status is not None else 255
        if status == 127:
            raise SlurmUnavailable(f"{argv[0]} not found on {self.host}: install the Slurm "
                                   "client commands on the login node")
        return Completed(status, str(result.stdout or ""), str(result.stderr or ""))

    async def read(self, path: str, offset: int, size: int) -> Optional[bytes]:
        import asyncssh

        try:
            async with (await self._sftp_client()).open(path, "rb") as handle:
                await handle.seek(offset)
                data = await handle.read(size)
                return bytes(data)
        except asyncssh.SFTPNoSuchFile:
            return None

    async def size(self, path: str) -> Optional[int]:
        import asyncssh

        try:
            attrs = await (await self._sftp_client()).stat(path)
        except asyncssh.SFTPNoSuchFile:
            return None
        return int(attrs.size or 0)

    async def makedirs(self, path: str) -> None:
        import asyncssh

        try:
            await (await self._sftp_client()).makedirs(path, exist_ok=True)
        except asyncssh.SFTPError as exc:
            raise SlurmUnavailable(f"cannot create {path} on {self.host}: {exc.reason}") from None

    async def home(self) -> str:
        return str(await (await self._sftp_client()).realpath("."))

    async def _sftp_client(self) -> Any:
        if self._sftp is None:
            self._sftp = await (await self._connection()).start_sftp_client()
        return self._sftp

    async def close(self) -> None:
        if self._sftp is not None:
            self._sftp.exit()
            self._sftp = None
        if self._conn is not None:
            self._conn.close()
            await self._conn.wait_closed()
            self._conn = None


def _ssh_reason(exc: BaseException) -> str:
    import asyncssh

    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return "its host key is not in the known hosts given (ssh_known_hosts)"
    if isinstance(exc, asyncssh.PermissionDenied):
        return "the key was refused (permission denied)"
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    text = str(getattr(exc, "reason", "") or exc or type(exc).__name__)
    return text.splitlines()[0] if text else type(exc).__name__
