"""Transient GetTask failures answered with the job's last known state, for a while.

The Flyte backend counts every GetTask error and never resets the count: after 5 the task
fails for good. A 3-minute outage of the service a connector polls would kill every
running task. So when a connector's `get` fails transiently (`is_transient`), the daemon
answers the last phase it saw for that job, with a message saying since when the status
check fails, for up to a grace period (`serve --get-error-grace`); then the error goes
out (gRPC UNAVAILABLE). Permanent errors are never shielded.

`JobMemory` remembers the last non-terminal phase of recently polled jobs, bounded (least
recently polled forgotten first). It lives in one process: a replica (or a restarted
daemon) that has not answered a job yet has nothing it can vouch for, so it answers the
error as before; the backend polls every replica in turn, so each learns a job's phase
from its first successful poll (docs/serve.md).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Optional

from connector_cli.errors import TransientError, bounded

DEFAULT_GRACE = 600.0
CAPACITY = 20_000
MAX_KEY_BYTES = 4096  # metas larger than this are not remembered (none of ours come close)
_TERMINAL = frozenset({3, 4, 5, 8})  # SUCCEEDED, ABORTED, FAILED, RETRYABLE_FAILED
_HTTP_TRANSIENT = frozenset({408, 425, 429, 500, 502, 503, 504})
_TRANSIENT_NAMES = frozenset({
    "ClientConnectionError", "ServerTimeoutError", "ServerDisconnectedError",  # aiohttp
    "ConnectError", "ConnectTimeout", "ReadTimeout", "PoolTimeout",  # httpx
    "ConnectionLost", "DisconnectError",  # asyncssh
})

Key = tuple[str, int, bytes]


def is_transient(exc: BaseException) -> bool:
    """True for an error a later retry may not get: our `TransientError`, connection and
    timeout errors (also the common HTTP clients' own), and HTTP 408/425/429/5xx errors
    of clients that carry a status (`status`, `code`, `response.status_code`)."""
    for error in (exc, exc.__cause__):
        if error is None:
            continue
        if isinstance(error, (TransientError, ConnectionError, TimeoutError,
                              asyncio.TimeoutError)):
            return True
        if any(cls.__name__ in _TRANSIENT_NAMES for cls in type(error).__mro__):
            return True
        if _http_status(error) in _HTTP_TRANSIENT:
            return True
    return False


def _http_status(exc: BaseException) -> Optional[int]:
    for value in (getattr(exc, "status", None), getattr(exc, "code", None),
                  getattr(getattr(exc, "response", None), "status_code", None)):
        if type(value) is int:
            return value
    return None


class JobMemory:
    """The last phase of recently polled jobs and since when their status checks fail."""

    __slots__ = ("grace", "capacity", "_jobs")

    def __init__(self, grace: float = DEFAULT_GRACE, capacity: int = CAPACITY) -> None:
        self.grace = grace
        self.capacity = capacity
        self._jobs: OrderedDict[Key, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._jobs)

    def seen(self, key: Key, phase: int) -> None:
        """A successful answer of `phase` for the job: O(1), on the GetTask hot path."""
        jobs = self._jobs
        if phase in _TERMINAL:
            jobs.pop(key, None)
            return
        entry = jobs.get(key)
        if entry is not None:
            entry[0], entry[1] = phase, 0.0
            jobs.move_to_end(key)
        elif len(key[2]) <= MAX_KEY_BYTES:
            jobs[key] = [phase, 0.0]
            if len(jobs) > self.capacity:
                jobs.popitem(last=False)

    def shield(self, key: Key, exc: BaseException) -> Optional[tuple[int, str]]:
        """The phase and message to answer instead of `exc`, or None when the error must
        go out: not transient, a job never answered here, or failing past the grace."""
        if self.grace <= 0 or not is_transient(exc):
            return None
        entry = self._jobs.get(key)
        if entry is None:
            return None
        now = time.time()
        if not entry[1]:
            entry[1] = now
        failing = now - entry[1]
        if failing > self.grace:
            return None
        since = time.strftime("%H:%M:%SZ", time.gmtime(entry[1]))
        reason = bounded(str(exc).splitlines()[0] if str(exc).strip() else "", 200)
        detail = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
        message = (f"status check failing since {since} ({failing:.0f}s; the error is "
                   f"returned after {self.grace:.0f}s): {detail}")
        return int(entry[0]), message
