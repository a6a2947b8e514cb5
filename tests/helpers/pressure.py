"""Pressure on a daemon in a subprocess: its peak RSS and how slowly health answers meanwhile.

The hostile-input tests of issue 28 drive a real `flyte-connector serve` with several
clients and assert that health keeps answering within a second and that the daemon's
peak resident memory (VmHWM, read from /proc) stays bounded.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Awaitable, Callable


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM) in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def rss_mib(pid: int) -> float:
    """The process's resident memory now (VmRSS) in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc status")


_PROBE = """
import sys, time, grpc
address, timeout = sys.argv[1], float(sys.argv[2])
with grpc.insecure_channel(address) as channel:
    check = channel.unary_unary("/grpc.health.v1.Health/Check")
    check(b"", timeout=timeout)
    print("ready", flush=True)
    slowest = 0.0
    while sys.stdin.readline().strip() == "probe":
        sent = time.perf_counter()
        try:
            check(b"", timeout=timeout)
            took = time.perf_counter() - sent
        except grpc.RpcError:
            took = timeout
        slowest = max(slowest, took)
        print(slowest, flush=True)
"""


async def health_while(address: str, load: Callable[[], Awaitable[object]],
                       timeout: float = 5.0) -> tuple[float, object]:
    """Run `load()` while another process probes health every 50 ms over its own channel:
    (slowest probe in seconds, load's result). A probe that fails or times out counts as
    `timeout`. The prober is a process of its own so the load's client work (and this
    process's GIL) cannot delay the probes."""
    prober = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _PROBE, address, str(timeout),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert prober.stdin is not None and prober.stdout is not None
    slowest = 0.0
    try:
        assert (await asyncio.wait_for(prober.stdout.readline(), 30)).strip() == b"ready"
        work = asyncio.ensure_future(load())
        while not work.done():
            prober.stdin.write(b"probe\n")
            slowest = float(await prober.stdout.readline())
            await asyncio.sleep(0.05)
        result = await work
    finally:
        prober.stdin.close()
        await prober.wait()
    return slowest, result


def figure(text: str) -> None:
    """Show a measured figure with `pytest -s` (the issue asks for them in the report)."""
    sys.stderr.write(f"\n[figure] {text}\n")
