"""The one stop policy of every long-running command: `serve`, its `--processes`
supervisor, and `test`.

- The first SIGINT or SIGTERM asks for a graceful stop: the daemon drains, the
  supervisor drains its workers, `test` stops polling and deletes the job.
- SIGINT after that forces the stop at once (Ctrl-C twice), exit status 130.
- SIGTERM after that is logged and ignored: `make` and a process-group kill deliver it
  twice (once to the group, once forwarded by the parent), and that must still drain.
  A runtime that wants it over sends SIGKILL when its own grace period ends.

`StopSignals` installs the handlers on the running loop and turns signals into two
events, `requested` and `forced`; the caller decides what each means for it.
"""

from __future__ import annotations

import asyncio
import signal
from types import TracebackType
from typing import Callable, Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)
Listener = Callable[[str], None]


class StopSignals:
    """SIGINT/SIGTERM handlers on the running loop that apply the policy above.

    `on_request(reason)` runs once, on the first signal ("received SIGTERM") or request;
    `on_force(name)` on a forcing signal and `on_repeat(name)` on an ignored repeat get
    the signal's name, for the caller's log line.
    Use as `async with StopSignals(...) as stop:`; `stop.request(reason)` asks for the
    graceful stop from code (a timeout, an orphaned worker)."""

    def __init__(self, on_request: Optional[Listener] = None,
                 on_force: Optional[Listener] = None,
                 on_repeat: Optional[Listener] = None) -> None:
        self.requested = asyncio.Event()
        self.forced = asyncio.Event()
        self.last_signal: Optional[int] = None
        self._on_request = on_request
        self._on_force = on_force
        self._on_repeat = on_repeat
        self._installed: list[int] = []

    @property
    def exit_code(self) -> int:
        """128 + the signal that forced the stop (130 for SIGINT), 0 when none did."""
        return 128 + self.last_signal if self.forced.is_set() and self.last_signal else 0

    def request(self, reason: str) -> None:
        """Ask for the graceful stop as a first signal would (no-op once asked)."""
        if not self.requested.is_set():
            self.requested.set()
            if self._on_request is not None:
                self._on_request(reason)

    def received(self, signum: int) -> None:
        """Apply the policy to one delivered signal."""
        name = signal.Signals(signum).name
        if not self.requested.is_set():
            self.last_signal = signum
            self.request(f"received {name}")
        elif signum == signal.SIGINT and not self.forced.is_set():
            self.last_signal = signum
            self.forced.set()
            if self._on_force is not None:
                self._on_force(name)
        elif self._on_repeat is not None and not self.forced.is_set():
            self._on_repeat(name)

    async def __aenter__(self) -> StopSignals:
        loop = asyncio.get_running_loop()
        for signum in SIGNALS:
            try:
                loop.add_signal_handler(signum, self.received, signum)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread, or no loop signal handlers on this platform
            self._installed.append(signum)
        return self

    async def __aexit__(self, kind: Optional[type[BaseException]],
                        value: Optional[BaseException],
                        traceback: Optional[TracebackType]) -> None:
        loop = asyncio.get_running_loop()
        for signum in self._installed:
            loop.remove_signal_handler(signum)
        self._installed.clear()
