"""The daemon as PID 1 (a container's entrypoint): a tiny init that reaps orphans.

Processes whose parent exits are re-parented to PID 1, and only PID 1 can collect them.
The daemon started as PID 1 never did: every deleted shell job left zombies, and under a
pids limit accepted jobs then failed with "cannot fork". `run_as_init` forks: the parent
stays PID 1, forwards the stop signals to the daemon (its child) and reaps every process
that ends, and exits with the daemon's status; the child goes on to be the daemon.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2)
ENV = "FLYTE_CONNECTOR_INIT"  # "0": stay PID 1 without an init (another one reaps)


def needed() -> bool:
    """True when this process is PID 1 and no one asked it not to act as init."""
    return os.getpid() == 1 and os.environ.get(ENV, "1") != "0"


def run_as_init() -> None:
    """Fork; in the parent, reap until the daemon (the child) ends, then exit with its
    status. Returns only in the child."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)  # none lost before fork
    pid = os.fork()
    if pid == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return
    _reap_until(pid)


def _reap_until(daemon: int) -> None:
    """PID 1's loop: forward stop signals to `daemon`, collect every child that ends."""

    def forward(signum: int, frame: Any) -> None:
        try:
            os.kill(daemon, signum)
        except ProcessLookupError:
            pass

    for signum in FORWARDED:
        signal.signal(signum, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(1)
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        if pid == daemon:
            code = os.waitstatus_to_exitcode(status)
            sys.stdout.flush()
            os._exit(code if code >= 0 else 128 - code)
