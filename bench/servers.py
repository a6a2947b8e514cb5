"""Server processes for the benchmarks: the daemon, the reference floor, or another server
of the same connector (`c0`, `pyflyte serve connector`), pinned to a core.

A server starts in its own session (so the load generator's `--server-pid` counts every
process of a `--processes N` daemon), and `ready_s` is the time from spawn until it has
answered ListConnectors, polled every millisecond as a fresh client would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KIT_ENV = "BENCH_KIT"
CONVERTING_FLOOR = "floor+conversion"  # the floor, its CreateTask converting the inputs
C0 = "c0"  # the Flyte SDK's own server with the kit's Flyte SDK `bench` connector
FLYTE_DAEMON = "ours"  # the daemon serving that same connector through our adapter
FLYTE_MODULE = "flyte_bench_connector"  # the kit's Flyte SDK connector
PYFLYTE = "pyflyte"  # flytekit's own server (bound to loopback) with flytekit_bench_connector
KIT_MODULE = "flytekit_bench_connector"  # the kit's connector written for flytekit


def find_kit() -> Optional[Path]:
    """The reference kit (floor_server.py, loadgen.py): $BENCH_KIT or ../shared/bench."""
    kit = Path(os.environ.get(KIT_ENV) or REPO.parent / "shared" / "bench")
    if (kit / "floor_server.py").is_file() and (kit / "loadgen.py").is_file():
        return kit
    return None


def byte_compile() -> None:
    """Write the .pyc files an installed package has (pip compiles at install time; an
    editable checkout under PYTHONDONTWRITEBYTECODE=1 would recompile on every start)."""
    import compileall

    for directory in (REPO / "connector_cli", REPO / "plugins", HERE):
        compileall.compile_dir(str(directory), quiet=1, force=False)


def cores() -> tuple[Optional[int], Optional[int]]:
    """(server core, load core), or (None, None) when there are fewer than two cores."""
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(available) < 2:
        return None, None
    return available[1], available[0]


def pinned(core: Optional[int]) -> object:
    """A preexec_fn that pins the child to `core` (no-op when None)."""
    def pin() -> None:
        if core is not None:
            os.sched_setaffinity(0, {core})
    return pin


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def daemon_argv(port: int, modules: tuple[str, ...], plugins: str, processes: int = 1,
                metrics: bool = True) -> list[str]:
    """`flyte-connector serve` as a user starts it (the console script when installed)."""
    script = Path(sys.executable).parent / "flyte-connector"
    head = [str(script)] if script.exists() else [sys.executable, "-m", "connector_cli"]
    argv = head + ["serve", "--host", "127.0.0.1", "--port", str(port), "--plugins", plugins,
                   "--metrics-port", str(free_port()) if metrics else "0",
                   "--log-level", "warning"]
    for module in modules:
        argv += ["-m", module]
    if processes != 1:
        argv += ["--processes", str(processes)]
    return argv


class Server:
    """One server subprocess: `kind` 'daemon' (or `FLYTE_DAEMON`: ours serving `modules`),
    'floor', `CONVERTING_FLOOR`, `C0` or `PYFLYTE`; `env` is added to its environment.
    `v1`: measured through Flyte 1's agent API (always so for `PYFLYTE`), readiness too."""

    def __init__(self, kind: str, kit: Path, core: Optional[int], plugins: str = "none",
                 processes: int = 1, modules: tuple[str, ...] = ("bench_connector",),
                 env: Optional[dict[str, str]] = None, v1: bool = False) -> None:
        self.kind = kind
        self.v1 = v1 or kind == PYFLYTE
        self.port = free_port()
        if kind == "floor":
            argv = [sys.executable, str(kit / "floor_server.py"), "--port", str(self.port)]
        elif kind == CONVERTING_FLOOR:
            argv = [sys.executable, str(HERE / "floor_converting.py"), "--kit", str(kit),
                    "--port", str(self.port)]
        elif kind == C0:  # c0's public entry point, bound to 127.0.0.1 by the kit's wrapper
            argv = [sys.executable, str(kit / "c0_server.py"), "--port", str(self.port),
                    "--prometheus-port", str(free_port())]
        elif kind == PYFLYTE:  # flytekit's entry point, bound to 127.0.0.1 by the tests' wrapper
            argv = [sys.executable, "-m", "tests.helpers.pyflyte_loopback", "--port",
                    str(self.port), "--prometheus_port", str(free_port())]
            argv += [arg for module in modules for arg in ("--modules", module)]
        else:
            argv = daemon_argv(self.port, modules, plugins, processes)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLYTE_CONNECTOR_")} \
            | (env or {})
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO), str(kit)])
        env["GRPC_VERBOSITY"] = "ERROR"
        started = time.perf_counter()
        self.proc = subprocess.Popen(argv, env=env, cwd=REPO, stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL if kind in (C0, PYFLYTE)
                                     else None,
                                     text=True, start_new_session=True,
                                     preexec_fn=pinned(core))  # type: ignore[arg-type]
        self.address = f"127.0.0.1:{self.port}"
        self.ready_s = wait_ready(self.address, self.proc, 30.0, self.v1) - started

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_mib(self) -> float:
        """Resident memory of the server's processes (its session), in MiB."""
        total = 0
        for pid in session_pids(self.proc.pid):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        assert self.proc.stderr is not None
        errors = self.proc.stderr.read()
        self.proc.stderr.close()
        if self.proc.returncode not in (0, -signal.SIGTERM) and errors:
            print(f"  {self.kind} exited {self.proc.returncode}: {errors[-500:]}", flush=True)


def session_pids(leader: int) -> list[int]:
    """`leader` and every live process whose process group is `leader`."""
    pids = [leader]
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != leader:
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(stat[2]) == leader:
                pids.append(int(entry))
    return pids


def wait_ready(address: str, proc: subprocess.Popen, timeout: float, v1: bool = False) -> float:
    """perf_counter() when ListConnectors (`v1`: ListAgents) first answered (TCP probe
    every 1 ms first)."""
    import grpc

    probe = _probe(v1)
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode} before answering")
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
        except OSError:
            time.sleep(0.001)
            continue
        with grpc.insecure_channel(address) as channel:
            try:
                probe(channel)
                return time.perf_counter()
            except grpc.RpcError:
                time.sleep(0.001)
    raise RuntimeError(f"{address} did not answer {'ListAgents' if v1 else 'ListConnectors'} "
                       f"within {timeout}s")


def _probe(v1: bool) -> Callable[[object], object]:
    """The call that says a server is ready: ListAgents (`v1`) or ListConnectors, its
    modules imported now, while the server starts, rather than once it listens."""
    if v1:
        from flyteidl.admin import agent_pb2
        from flyteidl.service.agent_pb2_grpc import AgentMetadataServiceStub

        return lambda channel: AgentMetadataServiceStub(channel).ListAgents(
            agent_pb2.ListAgentsRequest(), timeout=2)
    from flyteidl2.connector import connector_pb2 as pb
    from flyteidl2.connector.service_pb2_grpc import ConnectorMetadataServiceStub

    return lambda channel: ConnectorMetadataServiceStub(channel).ListConnectors(
        pb.ListConnectorsRequest(), timeout=2)


def loadgen(kit: Path, server: Server, rpc: str, seconds: float, core: Optional[int],
            concurrency: int = 64, channels: int = 1, task_type: str = "bench") -> dict:
    """One run of the kit's load generator against `server` (through Flyte 1's API, by
    loadgen_v1.py, when `server.v1`): its JSON line."""
    import json

    script = HERE / "loadgen_v1.py" if server.v1 else kit / "loadgen.py"
    argv = [sys.executable, str(script), "--target", server.address, "--rpc", rpc,
            "--concurrency", str(concurrency), "--duration", str(seconds), "--task-type",
            task_type, "--server-pid", str(server.pid), "--channels", str(channels)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60,
                         preexec_fn=pinned(core))  # type: ignore[arg-type]
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
