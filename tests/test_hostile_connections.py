"""Issue 28, item 8: idle connections must not take the daemon down.

At a 1,024 file descriptor limit, 1,100 idle TCP connections used to take health, new
connections and CreateTask down for as long as they were held. The daemon now accepts
connections only up to a limit below its descriptor limit and closes those that never
finish the HTTP/2 handshake; the backend's keepalive (30 s pings, 10 s timeout, also
between calls) keeps working.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import grpc.aio
import pytest

from connector_cli.daemon.limits import HANDSHAKE_MS
from tests.helpers.daemon_process import Daemon
from tests.helpers.h2_flood import idle_connections
from tests.helpers.pressure import figure, peak_rss_mib
from tests.helpers.raw_grpc import raw_call

pytestmark = pytest.mark.timeout(120)


def health(address: str, timeout: float = 5) -> float:
    """Seconds a health check from a new connection took (raises if it fails)."""
    with grpc.insecure_channel(address) as channel:
        sent = time.perf_counter()
        channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=timeout)
        return time.perf_counter() - sent


def first_health(address: str, within: float) -> float:
    """Seconds until a health check from a new connection first succeeds (probes of 0.2 s,
    each on a connection of its own, as a kubelet's are); `within` when none does."""
    started = time.perf_counter()
    while time.perf_counter() - started < within:
        try:
            health(address, timeout=0.2)
            return time.perf_counter() - started
        except grpc.RpcError:
            continue
    return within


async def test_idle_connections_past_the_fd_limit_are_shed() -> None:
    daemon = Daemon(fds=1024)
    address = daemon.wait_ready()
    held = idle_connections(address, 1100)
    try:
        stalled = await asyncio.to_thread(first_health, address, 10)
        took = await asyncio.to_thread(health, address)
        code, _ = await raw_call(address, "GetTask", b"", timeout=5)
        peak = peak_rss_mib(daemon.proc.pid)
    finally:
        for sock in held:
            sock.close()
        daemon.proc.terminate()
        _, log = daemon.finish()
    figure(f"1,100 idle connections at 1,024 fds: new connections' health answered "
           f"{stalled:.2f}s after the flood (handshake timeout {HANDSHAKE_MS / 1000:g}s), "
           f"then in {took:.3f}s; peak RSS {peak:.0f} MiB")
    assert len(held) == 1100
    assert stalled < HANDSHAKE_MS / 1000 + 1.0
    assert took < 1.0
    assert code == grpc.StatusCode.NOT_FOUND  # served: an empty GetTask names no task type
    assert "Too many open files" not in log


async def test_the_backends_keepalive_pings_are_accepted_between_calls() -> None:
    daemon = Daemon()
    address = daemon.wait_ready()
    options = [("grpc.keepalive_time_ms", 1000), ("grpc.keepalive_timeout_ms", 1000),
               ("grpc.keepalive_permit_without_calls", 1),
               ("grpc.http2.max_pings_without_data", 0)]
    try:
        async with grpc.aio.insecure_channel(address, options=options) as channel:
            check = channel.unary_unary("/grpc.health.v1.Health/Check")
            await check(b"", timeout=5)
            await asyncio.sleep(12)  # pings every 1 s, 10 s between calls
            await check(b"", timeout=5)
            state = channel.get_state()
    finally:
        daemon.proc.terminate()
        _, log = daemon.finish()
    assert state == grpc.ChannelConnectivity.READY
