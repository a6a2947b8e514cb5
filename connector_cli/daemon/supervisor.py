"""`serve --processes N`: N worker daemons on one port, supervised by the parent.

One Python process answers on one core; past that, the parent starts N complete daemons
(`worker_argv`) that bind the same port with SO_REUSEPORT, and the kernel spreads new
connections over them. The parent binds nothing that serves: it reserves the port (so
`--port 0` resolves once and nobody else takes it), applies the stop policy of
`connector_cli.shutdown` (a first signal or `--timeout` drains every worker with SIGTERM;
SIGINT again stops them at once),
restarts a worker that dies with a log line, and serves one `/metrics` that sums the
workers' snapshots (`MergedMetrics`). Health is answered by the workers themselves, so it
is SERVING exactly while a worker serves.

The worker's side is `connector_cli.daemon.worker_link`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import tempfile
import time
from typing import Any, Callable, Optional

from connector_cli.config import ServerConfig
from connector_cli.daemon.addresses import bind_error, check_free, host_port, reserve_port
from connector_cli.shutdown import StopSignals

logger = logging.getLogger(__name__)

RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
WorkerArgv = Callable[[int, str], list[str]]


def available_cores() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cores = cores or os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cores


class Supervisor:
    """Runs and supervises `processes` workers; `run()` returns the exit status."""

    def __init__(self, config: ServerConfig, processes: int, worker_argv: WorkerArgv) -> None:
        self.config = config
        self.processes = processes
        self.worker_argv = worker_argv
        self.port = 0
        self.metrics_port: Optional[int] = None
        self.workers: dict[int, subprocess.Popen] = {}
        self.restarts = 0
        self._state = ""
        self._stopping = False

    def live_pids(self) -> list[int]:
        """Pids of the workers running now."""
        return [p.pid for p in self.workers.values() if p.poll() is None]

    def _spawn(self, slot: int) -> subprocess.Popen:
        # its own process group: a signal sent to the parent's group (Ctrl-C, `timeout`)
        # reaches the workers once, forwarded by the parent, never twice
        argv = self.worker_argv(self.port, self._state)
        proc = subprocess.Popen(argv, preexec_fn=os.setpgrp)
        self.workers[slot] = proc
        return proc

    def _ready(self, proc: subprocess.Popen) -> bool:
        return os.path.exists(os.path.join(self._state, f"{proc.pid}.json"))

    async def _start_all(self) -> Optional[int]:
        """Start every worker; None when all are ready, else the failed worker's status."""
        for slot in range(self.processes):
            self._spawn(slot)
        while not all(self._ready(p) for p in self.workers.values()):
            for proc in self.workers.values():
                if proc.poll() is not None and not self._ready(proc):
                    return proc.returncode or 1
            await asyncio.sleep(0.01)
        return None

    async def _supervise(self, slot: int) -> None:
        """Restart the worker in `slot` whenever it dies, until shutdown."""
        failures = 0
        while not self._stopping:
            proc = self.workers[slot]
            started = time.monotonic()
            code = await asyncio.to_thread(proc.wait)
            if self._stopping:
                return
            failures = failures + 1 if time.monotonic() - started < 10 else 0
            delay = RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S) - 1)]
            logger.error("worker %d (pid %d) exited with %s; restarting it in %gs", slot + 1,
                         proc.pid, _describe(code), delay)
            await asyncio.sleep(delay)
            if not self._stopping:
                self.restarts += 1
                new = self._spawn(slot)
                logger.info("worker %d restarted (pid %d)", slot + 1, new.pid)

    def _signal_all(self, signum: int) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                try:
                    proc.send_signal(signum)
                except ProcessLookupError:
                    pass

    async def _drain(self, forced: asyncio.Event) -> bool:
        """SIGTERM every worker and wait for all; True when they all exited cleanly. When
        the stop is forced or the drain overruns, SIGINT stops the workers at once (the
        policy of `connector_cli.shutdown`), and SIGKILL what is left 2 s later."""
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.config.grace_period + 10
        while any(p.poll() is None for p in self.workers.values()):
            if forced.is_set() or time.monotonic() > deadline:
                self._signal_all(signal.SIGINT)
                await asyncio.sleep(2)
                self._signal_all(signal.SIGKILL)
                await asyncio.to_thread(lambda: [p.wait() for p in self.workers.values()])
                return False
            await asyncio.sleep(0.05)
        return all(p.returncode == 0 for p in self.workers.values())

    async def run(self) -> int:
        """Start, supervise until a stop signal (or `timeout`), drain; 0, 1 (start-up), or
        128 + the signal that forced the stop."""
        stop = StopSignals(
            on_request=lambda reason: logger.info(
                "%s: draining %d workers (up to %gs)", reason, len(self.live_pids()),
                self.config.grace_period),
            on_force=lambda name: logger.warning("received %s again: stopping the workers now",
                                                 name),
            on_repeat=lambda name: logger.info(
                "received %s again: still draining (SIGINT stops at once)", name),
        )
        async with stop:
            if self.config.metrics_port:
                check_free(self.config.host, self.config.metrics_port, "metrics")
            reservation = reserve_port(self.config.host, self.config.port)
            self.port = int(reservation.getsockname()[1])
            with tempfile.TemporaryDirectory(prefix="flyte-connector-") as state:
                self._state = state
                try:
                    return await self._serve(stop)
                finally:
                    self._stopping = True
                    self._signal_all(signal.SIGKILL)
                    reservation.close()

    async def _serve(self, stop: StopSignals) -> int:
        failed = await self._start_all()
        if failed is not None:
            self._stopping = True
            self._signal_all(signal.SIGTERM)
            await asyncio.to_thread(lambda: [p.wait() for p in self.workers.values()])
            logger.error("a worker could not start; stopping")
            return failed
        merged = await self._serve_metrics()
        address = host_port(self.config.host, self.port)
        logger.info("flyte-connector supervising %d worker processes on %s%s", self.processes,
                    address, f", metrics on port {self.metrics_port}" if merged else "")
        watchers = [asyncio.ensure_future(self._supervise(s)) for s in range(self.processes)]
        try:
            await asyncio.wait_for(stop.requested.wait(), self.config.timeout)
        except asyncio.TimeoutError:
            stop.request(f"timeout of {self.config.timeout:g}s reached")
        self._stopping = True
        for watcher in watchers:
            watcher.cancel()
        clean = await self._drain(stop.forced)
        if merged is not None:
            await merged.close()
        logger.info("flyte-connector on %s stopped", address)
        if stop.forced.is_set():
            return stop.exit_code
        return 0 if clean else 1

    async def _serve_metrics(self) -> Any:
        """The one /metrics of the daemon: the workers' snapshots summed at scrape time."""
        if self.config.metrics_port is None:
            return None
        from connector_cli.daemon.metrics import MergedMetrics
        from connector_cli.daemon.metrics_http import MetricsEndpoint

        endpoint = MetricsEndpoint(MergedMetrics(self._state, self.live_pids))
        try:
            self.metrics_port = await endpoint.start(self.config.host, self.config.metrics_port)
        except OSError as exc:
            raise bind_error("metrics", self.config.host, self.config.metrics_port,
                             exc.strerror or str(exc)) from None
        return endpoint


def _describe(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"
