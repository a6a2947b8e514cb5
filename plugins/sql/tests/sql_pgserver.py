"""A throwaway PostgreSQL server for the tests: initdb in a temp dir, a free loopback port.

Debian's `postgresql` package puts initdb and pg_ctl in /usr/lib/postgresql/<v>/bin, not on
PATH, so both places are searched. PostgreSQL refuses to run as root, so when the tests
run as root the server runs as the `postgres` user (or `nobody`). Authentication is
`scram-sha-256` over TCP, so a DSN without its password really cannot connect.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any, NoReturn, Optional

APP_USER = "app"
APP_DB = "app"


def unavailable(message: str) -> NoReturn:
    """Under CI a missing PostgreSQL is a failure (`make test` installs it), else a skip."""
    import pytest

    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def find_pg_bin() -> Optional[Path]:
    """The directory holding initdb and pg_ctl: from PATH, else the newest Debian one."""
    found = shutil.which("initdb")
    if found:
        real = Path(found).resolve().parent
        if (real / "pg_ctl").exists():
            return real
    candidates = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    candidates.sort(key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> Optional[pwd.struct_passwd]:
    """The unprivileged account to run the server as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


@dataclasses.dataclass
class PgServer:
    """A running throwaway server; `dsn` has no password, `password` is the app role's."""

    bindir: Path
    root: Path
    port: int
    password: str
    account: Optional[pwd.struct_passwd]

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def dsn(self) -> str:
        return f"postgresql://{APP_USER}@127.0.0.1:{self.port}/{APP_DB}"

    def _run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        kwargs: dict[str, Any] = {}
        if self.account is not None:
            kwargs = {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}
        return subprocess.run(
            list(argv), cwd=self.root, capture_output=True, text=True, timeout=timeout,
            check=False, **kwargs,
        )

    def _check(self, *argv: str) -> None:
        done = self._run(*argv)
        if done.returncode != 0:
            output = (done.stderr or done.stdout)[-800:]
            raise RuntimeError(f"{Path(argv[0]).name} failed: {output}")

    def start(self) -> None:
        """initdb, start on a free port, then create the `app` role and database."""
        pwfile = self.root / "pwfile"
        pwfile.write_text(secrets.token_urlsafe(16) + "\n")
        self._own(pwfile)
        self._check(str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "admin",
                    "--pwfile", str(pwfile), "--auth-local=trust", "--auth-host=scram-sha-256",
                    "-E", "UTF8", "--no-sync", "--no-instructions")
        pwfile.unlink()
        self.resume()
        self._bootstrap()

    def resume(self) -> None:
        """Start the (initialised) server and wait until it takes connections."""
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c shared_buffers=16MB -c max_connections=40")
        self._check(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l",
                    str(self.root / "server.log"), "-o", options, "-w", "-t", "60", "start")

    def refuse_new_connections(self) -> None:
        """A smart shutdown: new connections are refused at once, running sessions go on,
        and the server exits when the last one ends (an outage for everyone but them)."""
        self._check(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "smart",
                    "-W", "stop")

    def wait_stopped(self, timeout: float = 30) -> None:
        """Wait until the server has exited."""
        import time

        deadline = time.monotonic() + timeout
        while (self.datadir / "postmaster.pid").exists():
            assert time.monotonic() < deadline, "PostgreSQL did not stop"
            time.sleep(0.1)

    def _own(self, path: Path) -> None:
        if self.account is not None:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)

    def _bootstrap(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(host=str(self.root), port=self.port, user="admin",
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(APP_USER), sql.Literal(self.password)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(APP_DB), sql.Identifier(APP_USER)))

    def admin(self) -> Any:
        """A superuser connection over the Unix socket (trust auth), for inspecting the server."""
        import psycopg

        return psycopg.connect(host=str(self.root), port=self.port, user="admin",
                               dbname="postgres", autocommit=True)

    def stop(self) -> None:
        """Stop fast and remove every file."""
        if (self.datadir / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate",
                      "-w", "-t", "20", "stop", timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


def start_server(bindir: Path) -> PgServer:
    """Start a server in a fresh temp dir (under /tmp so the unprivileged user can reach it)."""
    account = _run_as()
    last: Optional[Exception] = None
    for _ in range(3):
        root = Path(tempfile.mkdtemp(prefix="flyte-sql-pg-"))
        if account is not None:
            os.chown(root, account.pw_uid, account.pw_gid)
        server = PgServer(bindir, root, _free_port(), secrets.token_urlsafe(18), account)
        try:
            server.start()
            return server
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            last = exc
            log = root / "server.log"
            if log.exists():
                last = RuntimeError(f"{exc}; server log: {log.read_text()[-800:]}")
            server.stop()
    raise RuntimeError(f"could not start a throwaway PostgreSQL server: {last}")
