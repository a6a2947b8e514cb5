"""The daemon against a bare grpc.aio server answering constants (the floor).

For CreateTask, GetTask and a mixed load (1 create : 3 gets) at concurrency 1, 16 and 64:
requests/s and p50/p99 latency of `flyte-connector serve` with a no-op connector and of
the floor, alternating the two over a few rounds; ratios are of medians. Also: time until
ListConnectors answers after start, resident memory after the load, and a batch of 64
GetTask calls to a plain-def connector blocking 100 ms (`--workers 64`) with a
ListConnectors call sent during it. The server runs on core 0 and this load generator on
core 1 when there are two cores. Figures on a shared machine are noisy.

Usage: python bench/bench_server.py [--rounds N] [--seconds S]   (or: --floor, internal)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).parent
REPO = HERE.parent
CONCURRENCY = (1, 16, 64)
WORKLOADS = ("create", "get", "mixed")


def pin(core: int) -> None:
    """Run on one core when the machine has at least two."""
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(0, {core})


# --- the floor: constants from a bare grpc.aio server -------------------------------------

async def serve_floor() -> None:
    import grpc.aio
    from flyteidl2.connector import connector_pb2 as pb
    from flyteidl2.connector import service_pb2_grpc as rpc

    created = pb.CreateTaskResponse(resource_meta=b'{"job_id":"job-1"}')
    got = pb.GetTaskResponse(resource=pb.Resource(phase=5, message="done"))
    listed = pb.ListConnectorsResponse(connectors=[pb.Connector(
        name="Noop", supported_task_categories=[pb.TaskCategory(name="noop")])])

    class Tasks(rpc.AsyncConnectorServiceServicer):
        async def CreateTask(self, request: Any, context: Any) -> Any:
            return created

        async def GetTask(self, request: Any, context: Any) -> Any:
            return got

    class Meta(rpc.ConnectorMetadataServiceServicer):
        async def ListConnectors(self, request: Any, context: Any) -> Any:
            return listed

    server = grpc.aio.server()
    rpc.add_AsyncConnectorServiceServicer_to_server(Tasks(), server)
    rpc.add_ConnectorMetadataServiceServicer_to_server(Meta(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0)


# --- server processes --------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server subprocess on core 0; `ready_after` is start -> first ListConnectors answer."""

    def __init__(self, kind: str, workers: int = 32, plugins: str = "none") -> None:
        if kind == "floor":
            argv = [sys.executable, str(Path(__file__).resolve()), "--floor"]
        else:
            argv = [sys.executable, "-m", "connector_cli", "serve", "--host", "127.0.0.1",
                    "--port", "0", "--metrics-port", str(free_port()), "--plugins", plugins,
                    "-m", "noop_connector", "--workers", str(workers), "--log-level", "info"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLYTE_CONNECTOR_")}
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO)])
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env,
                                     cwd=REPO, preexec_fn=lambda: pin(0))
        self.address = self._address()
        self.ready_after = asyncio.run(self._first_answer())

    def _address(self) -> str:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if "listening on " in line:
                return line.split("listening on ")[1].split()[0]
        raise RuntimeError(f"server did not start (exit {self.proc.wait()})")

    async def _first_answer(self) -> float:
        import grpc.aio
        from flyteidl2.connector import connector_pb2 as pb
        from flyteidl2.connector.service_pb2_grpc import ConnectorMetadataServiceStub

        async with grpc.aio.insecure_channel(self.address) as channel:
            await ConnectorMetadataServiceStub(channel).ListConnectors(
                pb.ListConnectorsRequest(), timeout=10, wait_for_ready=True)
        return time.perf_counter() - self.started

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used (all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()


# --- load -------------------------------------------------------------------------------

async def run_load(server: Server, workload: str, concurrency: int, seconds: float) -> dict:
    import grpc.aio
    from flyteidl2.connector import connector_pb2 as pb
    from flyteidl2.connector.service_pb2_grpc import AsyncConnectorServiceStub
    from flyteidl2.core.tasks_pb2 import TaskTemplate

    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = AsyncConnectorServiceStub(channel)
        create = pb.CreateTaskRequest(template=TaskTemplate(type="noop"), output_prefix="s3://b/o")
        meta = (await stub.CreateTask(create, timeout=10)).resource_meta
        get = pb.GetTaskRequest(task_category=pb.TaskCategory(name="noop"), resource_meta=meta)
        calls: list[tuple[Callable[..., Any], Any]] = {
            "create": [(stub.CreateTask, create)],
            "get": [(stub.GetTask, get)],
            "mixed": [(stub.CreateTask, create)] + [(stub.GetTask, get)] * 3,
        }[workload]
        latencies: list[float] = []

        async def worker(offset: int, until: float) -> None:
            i, clock = offset, time.perf_counter
            while (start := clock()) < until:
                method, request = calls[i % len(calls)]
                await method(request, timeout=10)
                latencies.append(clock() - start)
                i += 1

        await asyncio.gather(*(worker(i, time.perf_counter() + 0.2) for i in range(concurrency)))
        latencies.clear()
        cpu, began = server.cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(worker(i, began + seconds) for i in range(concurrency)))
        elapsed, cpu = time.perf_counter() - began, server.cpu_seconds() - cpu
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "cpu_us": cpu / len(latencies) * 1e6,
        "busy": cpu / elapsed,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


async def blocking_batch(address: str) -> tuple[float, float]:
    """64 concurrent GetTask to the blocking connector; ListConnectors latency during it."""
    import grpc.aio
    from flyteidl2.connector import connector_pb2 as pb
    from flyteidl2.connector.service_pb2_grpc import (
        AsyncConnectorServiceStub,
        ConnectorMetadataServiceStub,
    )

    async with grpc.aio.insecure_channel(address) as channel:
        tasks, meta = AsyncConnectorServiceStub(channel), ConnectorMetadataServiceStub(channel)
        await meta.ListConnectors(pb.ListConnectorsRequest(), timeout=10)
        request = pb.GetTaskRequest(task_category=pb.TaskCategory(name="blocking"),
                                    resource_meta=b'{"job_id":"j"}')
        started = time.perf_counter()
        batch = asyncio.gather(*(tasks.GetTask(request, timeout=10) for _ in range(64)))
        await asyncio.sleep(0.02)
        asked = time.perf_counter()
        await meta.ListConnectors(pb.ListConnectorsRequest(), timeout=10)
        list_ms = (time.perf_counter() - asked) * 1000
        await batch
        return time.perf_counter() - started, list_ms


# --- orchestration ------------------------------------------------------------------------

def measure_rounds(rounds: int, seconds: float) -> tuple[dict, dict, dict]:
    results: dict = {
        (k, w, c): [] for k in ("ours", "floor") for w in WORKLOADS for c in CONCURRENCY
    }
    rss: dict = {"ours": [], "floor": []}
    ready: dict = {"ours": [], "floor": []}
    for r in range(rounds):
        order = ("ours", "floor") if r % 2 == 0 else ("floor", "ours")
        for kind in order:
            server = Server(kind)
            ready[kind].append(server.ready_after)
            try:
                for workload in WORKLOADS:
                    for conc in CONCURRENCY:
                        got = asyncio.run(run_load(server, workload, conc, seconds))
                        results[(kind, workload, conc)].append(got)
                rss[kind].append(server.rss_mib())
            finally:
                server.stop()
        print(f"  round {r + 1}/{rounds} done", flush=True)
    return results, rss, ready


def median(rows: list[dict], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def report(results: dict, rss: dict, ready: dict, extra: dict) -> None:
    print(f"\n{'workload':<8} {'conc':>4} | {'ours/s':>6} {'floor/s':>7} {'ratio':>5} | "
          f"{'ours p50/p99 ms':>15} {'floor p50/p99 ms':>16} {'p99x':>5} | "
          f"{'CPU us/req ours floor':>21} {'capacity':>8} {'busy':>9}")
    for workload in WORKLOADS:
        for conc in CONCURRENCY:
            ours, floor = results[("ours", workload, conc)], results[("floor", workload, conc)]
            m = {key: (median(ours, key), median(floor, key))
                 for key in ("rps", "p50", "p99", "cpu_us", "busy")}
            print(f"{workload:<8} {conc:>4} | {m['rps'][0]:>6.0f} {m['rps'][1]:>7.0f} "
                  f"{m['rps'][0] / m['rps'][1]:>5.2f} | {m['p50'][0]:>6.2f}/{m['p99'][0]:<7.2f} "
                  f"{m['p50'][1]:>7.2f}/{m['p99'][1]:<7.2f} {m['p99'][0] / m['p99'][1]:>5.2f} | "
                  f"{m['cpu_us'][0]:>10.0f} {m['cpu_us'][1]:>10.0f} "
                  f"{m['cpu_us'][1] / m['cpu_us'][0]:>8.2f} "
                  f"{m['busy'][0]:>4.0%}/{m['busy'][1]:<4.0%}")
    print("\nratio: requests/s of ours / floor's (medians). capacity: the floor's server CPU per "
          "request / ours,\ni.e. the throughput ratio once the server's core is the bottleneck. "
          "busy: server core use;\nbelow ~90% the load generator, not the server, set the pace.")
    for workload in ("create", "get"):
        ours, floor = results[("ours", workload, 64)], results[("floor", workload, 64)]
        ratio = median(ours, "rps") / median(floor, "rps")
        capacity = median(floor, "cpu_us") / median(ours, "cpu_us")
        p99x = median(ours, "p99") / median(floor, "p99")
        print(f"{workload} @64: {ratio:.2f} of the floor's requests/s, capacity {capacity:.2f} "
              f"(target >= 0.80); p99 {p99x:.2f}x the floor's (target <= 1.3)")
    print(f"ready (start -> ListConnectors answered, median): ours "
          f"{statistics.median(ready['ours']):.3f}s, "
          f"with all installed plugins {extra['ready_all']:.3f}s, floor "
          f"{statistics.median(ready['floor']):.3f}s (target <= 0.25s)")
    ours_rss, floor_rss = statistics.median(rss["ours"]), statistics.median(rss["floor"])
    print(f"RSS after load (median): ours {ours_rss:.1f} MiB, floor {floor_rss:.1f} MiB, "
          f"ratio {ours_rss / floor_rss:.2f} (target <= 1.3)")
    print(f"blocking batch (64 x GetTask blocking 100 ms, --workers 64, median of "
          f"{len(extra['batch'])}): {statistics.median(b[0] for b in extra['batch']):.3f}s "
          f"(target well under 0.5s); ListConnectors during it "
          f"{statistics.median(b[1] for b in extra['batch']):.1f} ms")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.5, help="per measurement")
    args = parser.parse_args(argv)
    if args.floor:
        asyncio.run(serve_floor())
        return 0
    pin(1)
    print(f"server on core 0, load on core 1 ({os.cpu_count()} cores); "
          f"{args.rounds} rounds x {args.seconds}s per cell; figures are noisy on a shared "
          "machine", flush=True)
    results, rss, ready = measure_rounds(args.rounds, args.seconds)
    batch = []
    server = Server("ours", workers=64)
    try:
        for _ in range(3):
            batch.append(asyncio.run(blocking_batch(server.address)))
    finally:
        server.stop()
    all_plugins = Server("ours", plugins="all")
    all_plugins.stop()
    report(results, rss, ready, {"batch": batch, "ready_all": all_plugins.ready_after})
    return 0


if __name__ == "__main__":
    sys.exit(main())
