"""`make serve` and the daemon's signals as a user and a supervisor meet them (issue 14).

Ctrl-C is typed into a real pseudo-terminal that `make serve` runs in; ports come from the
environment variables the README documents; a doubled SIGTERM still drains.
"""

from __future__ import annotations

import asyncio
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc.aio
from flyteidl2.connector.service_pb2_grpc import AsyncConnectorServiceStub

from tests.conftest import REPO, cli_env
from tests.helpers.daemon_process import Daemon, slow_get, wait_in_flight

# Make the pty the controlling terminal of a new session, then become the command.
_SESSION = ("import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0);"
            " os.execvp(sys.argv[1], sys.argv[1:])")


def read_until(master: int, needle: bytes, timeout: float) -> bytes:
    """What the terminal shows until `needle` appears (or the timeout)."""
    seen, deadline = b"", time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    return seen


def make_serve_in_a_terminal(**env: str) -> tuple[subprocess.Popen[bytes], int]:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", _SESSION, "make", "--no-print-directory", "serve",
         "SERVE_ARGS=--host 127.0.0.1 --plugins none"],
        stdin=slave, stdout=slave, stderr=slave, cwd=REPO,
        env=cli_env(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                    **env),
    )
    os.close(slave)
    return proc, master


def test_ctrl_c_stops_make_serve_with_status_0() -> None:
    proc, master = make_serve_in_a_terminal(FLYTE_CONNECTOR_PORT="0",
                                            FLYTE_CONNECTOR_METRICS_PORT="0")
    try:
        shown = read_until(master, b"listening on 127.0.0.1:", 120)
        assert b"listening on 127.0.0.1:" in shown, shown.decode(errors="replace")
        os.write(master, b"\x03")  # Ctrl-C, delivered by the terminal driver
        code = proc.wait(timeout=60)
        shown += read_until(master, b"\0", 2)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = shown.decode(errors="replace")
    assert code == 0, text
    assert "received SIGINT: shutting down" in text and "stopped" in text
    assert "make: ***" not in text and "Interrupt" not in text


def test_a_taken_metrics_port_names_the_variable_to_change() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        result = subprocess.run(
            ["make", "--no-print-directory", "serve", "SERVE_ARGS=--host 127.0.0.1 --plugins none"],
            cwd=REPO, capture_output=True, text=True, timeout=120,
            env=cli_env(FLYTE_CONNECTOR_PORT="0", FLYTE_CONNECTOR_METRICS_PORT=str(taken)),
        )
    assert result.returncode == 2  # make's status for a failed recipe
    assert (f"Error: cannot serve metrics on 127.0.0.1:{taken}: Address already in use "
            "(choose another port with --metrics-port or FLYTE_CONNECTOR_METRICS_PORT; "
            "0 disables metrics)\n") in result.stderr


async def test_a_second_sigterm_does_not_cut_the_drain_short() -> None:
    daemon = Daemon("--grace-period", "30")
    address = daemon.wait_ready()
    async with grpc.aio.insecure_channel(address) as channel:
        call = AsyncConnectorServiceStub(channel).GetTask(slow_get(2.0), timeout=30)
        await wait_in_flight()
        daemon.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        daemon.proc.send_signal(signal.SIGTERM)
        response = await call
    assert response.resource.message == "slept"
    code, log = await asyncio.to_thread(daemon.finish)
    assert code == 0, log
    assert "received SIGTERM again: still draining (SIGINT stops at once)" in log
    assert "stopping now" not in log and "cancelled" not in log
