"""`serve --processes 2` against `--processes 1`: how requests spread and what they cost.

On a 2-core machine the load generator needs a core too, so this shows the spread over
workers and the CPU per RPC (summed over the parent and its workers), not a speed-up; see
docs/deploy.md for what more cores give. Run by bench_server.py; alone:
python bench/multiprocess.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import Server, find_kit, loadgen, session_pids


def cpu_seconds(leader: int) -> float:
    """utime + stime of `leader` and its workers (they run in process groups of their own,
    so the load generator's --server-pid sees only the parent)."""
    total = 0
    for pid in session_pids(leader) + children(leader):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


async def spread(address: str, connections: int = 32) -> Counter:
    """Which worker answered each of `connections` fresh connections (the `pid` connector)."""
    import grpc.aio
    from flyteidl2.connector import connector_pb2 as pb
    from flyteidl2.connector.service_pb2_grpc import AsyncConnectorServiceStub

    request = pb.GetTaskRequest(task_category=pb.TaskCategory(name="pid"),
                                resource_meta=b'{"job_id":"j","region":"local"}')

    async def one() -> str:
        options = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(address, options=options) as channel:
            reply = await AsyncConnectorServiceStub(channel).GetTask(request, timeout=10)
        return str(reply.resource.message)

    return Counter(await asyncio.gather(*(one() for _ in range(connections))))


def run(kit: Path, processes: int, seconds: float) -> tuple[dict, Counter, float]:
    server = Server("daemon", kit, None, processes=processes)
    try:
        pids = asyncio.run(spread(server.address))
        for _ in range(20):  # ready = the first worker answers; wait for the others
            if len(pids) >= processes:
                break
            time.sleep(0.25)
            pids = asyncio.run(spread(server.address))
        before = cpu_seconds(server.pid)
        got = loadgen(kit, server, "get", seconds, None, channels=8)
        used = cpu_seconds(server.pid) - before
    finally:
        server.stop()
    return got, pids, used


def processes_report(kit: Path, seconds: float, counts: tuple[int, ...] = (1, 2)) -> None:
    """Print GetTask c=64 over 8 connections for each process count (nothing pinned)."""
    print("\n--processes (GetTask c=64 over 8 connections, nothing pinned; CPU summed over "
          "the parent and its workers):")
    for n in counts:
        got, pids, used = run(kit, n, seconds)
        window = got["duration_s"] + 0.5  # loadgen's warm-up is inside the CPU window too
        per_rpc = used / max(1, got["ok"] * window / got["duration_s"]) * 1e6
        share = ", ".join(str(c) for c in sorted(pids.values(), reverse=True))
        print(f"  processes={n}: {got['rps']:,.0f} req/s, p99 {got['p99_ms']:.1f} ms, about "
              f"{per_rpc:.0f} us server CPU per RPC, client CPU {got['client_cpu_pct']:.0f}%; "
              f"32 connections answered by {len(pids)} worker(s): {share}")


def main(argv: Optional[list[str]] = None) -> int:
    kit = find_kit()
    if kit is None:
        print("the reference bench kit was not found (../shared/bench or $BENCH_KIT)",
              file=sys.stderr)
        return 2
    processes_report(kit, 3.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
