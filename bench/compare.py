"""Our daemon against another server of the same connector, as issue 25 judges it: the
method shared by bench_flyte_sdk.py (against `c0`) and bench_flytekit.py (against
`pyflyte serve connector`).

Each round starts both servers, alternating the order, the server pinned to one core and
the load generator to the other: RSS once ready and idle, GetTask and CreateTask at c=64
(requests/s, p99, server CPU per RPC, the load generator's own CPU, flagged when it set
the pace), RSS after the load. The table gives medians, spread and ours / theirs against
the issue's targets. Last, isolation: our daemon serving the same connector with a `get`
that blocks its loop (BENCH_GET_MODE=blocking), `BLOCKED_CALLS` such GetTasks in flight,
and the latency of the metadata calls meanwhile (target < 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

from bench_server import Row, flags, line, ratio_rows
from servers import FLYTE_DAEMON, Server, byte_compile, cores, find_kit, loadgen

BLOCKED_CALLS = 32
BLOCK_SECONDS = 0.5
ISOLATED_MS = 50.0
BLOCKING_ENV = {"BENCH_GET_MODE": "blocking", "BENCH_GET_SLEEP": str(BLOCK_SECONDS)}
RPCS = ("get", "create")

# (ours's address) -> {metadata call: latencies in s} while the connector's loop is
# blocked, and how many blocked GetTasks had finished by the last one.
Isolation = Callable[[str], Awaitable[tuple[dict[str, list[float]], int]]]


@dataclass(frozen=True)
class Contest:
    """Who is compared: `theirs` is their Server kind (and the table's column); the
    options are Server keyword arguments (modules, v1); `isolation` probes ours. It needs
    `kit_file` in the reference kit and the module `sdk` (`sdk_hint` says how to get it)."""

    what: str
    theirs: str
    isolation: Isolation
    kit_file: str
    sdk: str
    sdk_hint: str
    ours_options: dict[str, Any] = field(default_factory=dict)
    theirs_options: dict[str, Any] = field(default_factory=dict)


def row(figure: str, fmt: str, pick: Callable[[dict], float], target: str = "") -> Row:
    """A row of the table; `target` on the ratio is '>= X', '<= X' or '' (none)."""
    if not target:
        return figure, fmt, pick, "", lambda x: True
    op, bound = target.split()
    limit = float(bound)
    if op == ">=":
        return figure, fmt, pick, target, lambda x: x >= limit
    return figure, fmt, pick, target, lambda x: x <= limit


def per_rpc(figure: str, fmt: str, key: str, target: str = "") -> list[Row]:
    """The GetTask and the CreateTask row of one load-generator figure."""
    return [row(figure.format(name), fmt, lambda r, rpc=rpc: r[rpc][key], target)
            for rpc, name in (("get", "GetTask"), ("create", "CreateTask"))]


ROWS: list[Row] = [
    *per_rpc("{} req/s, c=64", "{:,.0f}", "rps", ">= 1.30"),
    *per_rpc("server CPU per {} (us)", "{:.0f}", "server_cpu_us_per_rpc", "<= 0.77"),
    *per_rpc("p99 {}, c=64 (ms)", "{:.1f}", "p99_ms", "<= 1.0"),
    row("RSS idle (MiB)", "{:.1f}", lambda r: r["idle"], "<= 1.05"),
    row("RSS after load (MiB)", "{:.1f}", lambda r: r["rss"], "<= 1.05"),
    *per_rpc("load generator CPU, {} (%)", "{:.0f}", "client_cpu_pct"),
]


def main(contest: Contest, doc: Optional[str], argv: Optional[list[str]]) -> int:
    """A comparison's command line (--rounds, --seconds): 2 without what it needs."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="per load-generator run")
    args = parser.parse_args(argv)
    kit = find_kit()
    missing = None
    if kit is None or not (kit / contest.kit_file).is_file():
        missing = (f"the reference bench kit with {contest.kit_file} was not found "
                   "(../shared/bench or $BENCH_KIT)")
    elif not _importable(contest.sdk):
        missing = f"{contest.sdk} is not installed ({contest.sdk_hint})"
    if missing or kit is None:
        print(f"{missing}; skipping the {contest.theirs} comparison.", file=sys.stderr)
        return 2
    sys.path.insert(0, str(kit))  # the kit's request builders, for the isolation check
    return compare(contest, kit, args)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def measure(kind: str, kit: Path, seconds: float, server_core: Optional[int],
            load_core: Optional[int], options: dict[str, Any]) -> dict:
    """One server: idle RSS, GetTask and CreateTask at c=64, RSS after that load."""
    server = Server(kind, kit, server_core, **options)
    try:
        time.sleep(0.5)  # let start-up garbage settle before the idle figure
        got: dict = {"idle": server.rss_mib()}
        for rpc in RPCS:
            got[rpc] = loadgen(kit, server, rpc, seconds, load_core)
        got["rss"] = server.rss_mib()
        return got
    finally:
        server.stop()


def table(runs: dict[str, list[dict]], theirs: str) -> bool:
    """Print ours / theirs per figure; True when every target is met."""
    print(f"\n| figure | ours | {theirs} | ratio | target |")
    print("|---|---|---|---|---|")
    met = ratio_rows(ROWS, runs[FLYTE_DAEMON], runs[theirs])
    print(f"Medians over rounds, spread in brackets; ratios are ours / {theirs} of medians.")
    return met


async def while_blocked(create: Callable[[], Awaitable[bytes]],
                        get: Callable[[bytes], Awaitable[Any]],
                        listings: dict[str, Callable[[], Awaitable[Any]]],
                        ) -> tuple[dict[str, list[float]], int]:
    """Latencies (s) of each metadata call in `listings` while `BLOCKED_CALLS` GetTasks
    block the connector's loop, and how many of those had finished by the last one."""
    meta = await create()
    calls = [asyncio.ensure_future(get(meta)) for _ in range(BLOCKED_CALLS)]
    await asyncio.sleep(0.2)
    latencies: dict[str, list[float]] = {name: [] for name in listings}
    for _ in range(20):
        for name, listing in listings.items():
            started = time.perf_counter()
            await listing()
            latencies[name].append(time.perf_counter() - started)
        await asyncio.sleep(0.02)
    finished = sum(call.done() for call in calls)
    for call in calls:
        call.cancel()
    await asyncio.gather(*calls, return_exceptions=True)
    return latencies, finished


def isolation(contest: Contest, kit: Path, server_core: Optional[int]) -> bool:
    """Print the metadata calls' latency during blocked calls on our daemon; True when
    every one stayed under target."""
    server = Server(FLYTE_DAEMON, kit, server_core, env=BLOCKING_ENV, **contest.ours_options)
    try:
        latencies, finished = asyncio.run(contest.isolation(server.address))
    finally:
        server.stop()
    met = True
    for name, seconds in latencies.items():
        worst = max(seconds) * 1000
        good = worst < ISOLATED_MS
        met &= good
        print(f"\nisolation: {name} during {BLOCKED_CALLS} GetTasks blocking the "
              f"connector's loop {BLOCK_SECONDS}s each: max {worst:.1f} ms, median "
              f"{statistics.median(seconds) * 1000:.1f} ms ({finished} of the blocked calls "
              f"done meanwhile); target < {ISOLATED_MS:.0f} ms {'ok' if good else 'MISSED'}")
    return met


def compare(contest: Contest, kit: Path, args: argparse.Namespace) -> int:
    """The rounds, the table and the isolation check; prints everything, returns 0."""
    byte_compile()
    server_core, load_core = cores()
    print(f"kit {kit}; {contest.what}; {args.rounds} rounds x (GetTask, CreateTask) x "
          f"{args.seconds}s", flush=True)
    started = time.perf_counter()
    options = {FLYTE_DAEMON: contest.ours_options, contest.theirs: contest.theirs_options}
    runs: dict[str, list[dict]] = {FLYTE_DAEMON: [], contest.theirs: []}
    for n in range(args.rounds):
        order = (FLYTE_DAEMON, contest.theirs)
        for kind in order if n % 2 == 0 else order[::-1]:
            got = measure(kind, kit, args.seconds, server_core, load_core, options[kind])
            runs[kind].append(got)
            print(f"round {n + 1} {kind}: RSS idle {got['idle']:.1f} MiB, after load "
                  f"{got['rss']:.1f} MiB", flush=True)
            for rpc in RPCS:
                print(line(kind, rpc, got[rpc]), flush=True)
    met = table(runs, contest.theirs)
    met &= isolation(contest, kit, server_core)
    bound = [r[rpc] for kind in runs for r in runs[kind] for rpc in RPCS if flags(r[rpc])]
    if bound:
        print(f"WARNING: {len(bound)} runs were flagged above; the ratios may reflect the "
              "load generator, not the server.")
    print(f"targets {'met' if met else 'not all met'}; runs "
          f"{'flagged' if bound else 'clean'}; {time.perf_counter() - started:.0f}s")
    return 0
