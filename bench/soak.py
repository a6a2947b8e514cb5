"""Soak a real `flyte-connector serve` with the bundled plugins; report memory, fds, files.

For `--seconds` (default 180) a few client loops run shell jobs (create, poll get until
done, read logs), SQLite jobs, a delete of a running job, bursts of large (8 MiB)
requests and garbage bodies against one daemon subprocess. Every `--every` seconds it
samples the daemon's resident memory, open file descriptors, threads and the number of
job files on disk, then prints the table, the RSS slope (least squares over the second
half, MiB per minute) and the RSS before and after the large-request bursts. Finished
jobs' files are swept after `--retention` seconds (default 30), so their count levels off.

Usage: python bench/soak.py [--seconds 180] [--every 5] [--clients 4] [--retention 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from flyteidl2.connector import connector_pb2 as pb

from connector_cli.client import ConnectorClient
from connector_cli.testing import make_template

TERMINAL = {3, 4, 5, 6, 7}  # SUCCEEDED, FAILED, ABORTED, (RETRYABLE_)FAILED ...
SERVICE = "/flyteidl2.connector.AsyncConnectorService/"
MiB = 1 << 20


def start_daemon(state: Path, retention: float) -> tuple[subprocess.Popen[str], str]:
    """`flyte-connector serve` on a free port with shell and sql, finished jobs' files kept
    for `retention` seconds; (process, address)."""
    env = dict(os.environ, FLYTE_CONNECTOR_SHELL_STATE_DIR=str(state / "shell"),
               FLYTE_CONNECTOR_SQL_STATE_DIR=str(state / "sql"),
               FLYTE_CONNECTOR_STATE_DIR=str(state / "daemon"),
               FLYTE_CONNECTOR_SHELL_RETENTION_SECONDS=str(retention),
               FLYTE_CONNECTOR_SQL_RETENTION_SECONDS=str(retention))
    exe = str(Path(sys.executable).with_name("flyte-connector"))
    proc = subprocess.Popen(
        [exe, "serve", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
         "--plugins", "shell,sql", "--log-level", "warning"],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stderr is not None
    env_log = state / "daemon.log"
    deadline = time.monotonic() + 60
    # --log-level warning hides the ready line; find the port from /proc instead.
    while time.monotonic() < deadline:
        port = listening_port(proc.pid)
        if port:
            threading_drain(proc, env_log)
            return proc, f"127.0.0.1:{port}"
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited: {proc.stderr.read()}")
        time.sleep(0.1)
    raise SystemExit("the daemon did not start listening")


def threading_drain(proc: subprocess.Popen[str], log: Path) -> None:
    """Copy the daemon's stderr into `log` so its pipe never fills."""
    import shutil
    import threading

    def run() -> None:
        with log.open("w") as out:
            assert proc.stderr is not None
            shutil.copyfileobj(proc.stderr, out)

    threading.Thread(target=run, daemon=True).start()


def listening_port(pid: int) -> int:
    """The TCP port `pid` listens on (the gRPC one: the lowest inode wins), or 0."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            match = re.match(r"socket:\[(\d+)\]", target)
            if match:
                inodes.add(match.group(1))
    except OSError:
        return 0
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                ports.append((int(fields[9]), int(fields[1].rsplit(":", 1)[1], 16)))
    return sorted(ports)[0][1] if ports else 0


def sample(pid: int, state: Path) -> dict[str, float]:
    """RSS (MiB), open fds, threads and job files of the daemon right now."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    files = sum(len(names) for _, _, names in os.walk(state))
    return {"rss": rss, "fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": threads,
            "files": files}


async def shell_job(client: ConnectorClient, prefix: Path, counts: dict[str, int]) -> None:
    template = make_template("shell", custom={"script": "echo soak; echo err >&2"})
    meta = await client.create(template, str(prefix))
    while (await client.get(("shell", 0), meta)).phase not in TERMINAL:
        await asyncio.sleep(0.05)
    async for _ in client.get_logs(("shell", 0), meta):
        pass
    counts["shell"] += 1


async def sql_job(client: ConnectorClient, prefix: Path, counts: dict[str, int]) -> None:
    template = make_template("sql", custom={"query": "SELECT 1 AS one", "format": "csv"})
    meta = await client.create(template, str(prefix))
    while (await client.get(("sql", 0), meta)).phase not in TERMINAL:
        await asyncio.sleep(0.05)
    counts["sql"] += 1


async def deleted_job(client: ConnectorClient, prefix: Path, counts: dict[str, int]) -> None:
    template = make_template("shell", custom={"script": "sleep 30"})
    meta = await client.create(template, str(prefix))
    await client.delete(("shell", 0), meta)
    counts["deleted"] += 1


async def hostile(address: str, counts: dict[str, int], large: int) -> None:
    """Garbage bodies, then `large` concurrent 8 MiB GetTasks (most are refused)."""
    async with grpc.aio.insecure_channel(
        address, options=[("grpc.max_send_message_length", 64 * MiB)]
    ) as channel:
        long_name = pb.GetTaskRequest(  # issue 28: refused before any lookup
            task_category=pb.TaskCategory(name="n" * MiB)).SerializeToString()
        for body in (b"\xff", b"\x0a\xff\xff\xff\xff\x0f", os.urandom(64), long_name):
            try:
                await channel.unary_unary(SERVICE + "GetTask")(body, timeout=10)
            except grpc.aio.AioRpcError:
                counts["garbage"] += 1
        big = pb.GetTaskRequest(task_category=pb.TaskCategory(name="shell"),
                                output_prefix="x" * (8 * MiB)).SerializeToString()

        async def one() -> None:
            try:
                await channel.unary_unary(SERVICE + "GetTask")(big, timeout=30)
            except grpc.aio.AioRpcError as exc:
                counts[f"large {exc.code().name}"] += 1

        await asyncio.gather(*(one() for _ in range(large)))


async def client_loop(address: str, prefix: Path, until: float, counts: dict[str, int],
                      index: int) -> None:
    async with ConnectorClient(address, timeout=30) as client:
        turn = 0
        while time.monotonic() < until:
            turn += 1
            job = (sql_job if turn % 3 == 0 else deleted_job if turn % 10 == 0 else shell_job)
            try:
                await job(client, prefix / f"c{index}", counts)
            except Exception as exc:  # noqa: BLE001 - a soak counts errors, never stops on them
                counts[f"error {type(exc).__name__}"] += 1


async def soak(args: argparse.Namespace) -> None:
    from collections import Counter

    state = Path(tempfile.mkdtemp(prefix="flyte-connector-soak-"))
    proc, address = start_daemon(state, args.retention)
    counts: Counter[str] = Counter()
    rows: list[tuple[float, dict[str, float]]] = []
    burst: list[tuple[str, float]] = []
    started = time.monotonic()
    until = started + args.seconds
    try:
        rows.append((0.0, sample(proc.pid, state)))
        clients = [asyncio.create_task(client_loop(address, state / "out", until, counts, i))
                   for i in range(args.clients)]
        next_burst = started + args.seconds / 4
        while time.monotonic() < until:
            await asyncio.sleep(args.every)
            now = time.monotonic()
            if now >= next_burst and len(burst) < 6:
                burst.append(("before", sample(proc.pid, state)["rss"]))
                await hostile(address, counts, large=6)
                await asyncio.sleep(1.0)
                burst.append(("after", sample(proc.pid, state)["rss"]))
                next_burst = now + args.seconds / 4
            rows.append((now - started, sample(proc.pid, state)))
        await asyncio.gather(*clients)
        rows.append((time.monotonic() - started, sample(proc.pid, state)))
    finally:
        proc.terminate()
        proc.wait(30)
    report(rows, burst, counts, proc.returncode)


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB), in MiB per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points) or 1.0
    return 60 * sum((x - mx) * (y - my) for x, y in points) / den


def report(rows: list[tuple[float, dict[str, float]]], burst: list[tuple[str, float]],
           counts: Any, code: Any) -> None:
    print(f"{'t (s)':>7} {'RSS MiB':>8} {'fds':>5} {'threads':>7} {'job files':>9}")
    for t, row in rows:
        print(f"{t:7.0f} {row['rss']:8.1f} {row['fds']:5.0f} {row['threads']:7.0f} "
              f"{row['files']:9.0f}")
    half = [(t, r["rss"]) for t, r in rows[len(rows) // 2:]]
    print(f"RSS slope over the second half: {slope(half):+.2f} MiB/min")
    for (_, before), (_, after) in zip(burst[::2], burst[1::2]):
        print(f"large-request burst: RSS {before:.1f} MiB before, {after:.1f} MiB 1 s after")
    print("done:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"daemon exit status after SIGTERM: {code}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--every", type=float, default=5)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--retention", type=float, default=30,
                        help="seconds finished jobs' files are kept (the daemon's sweep)")
    asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    main()
