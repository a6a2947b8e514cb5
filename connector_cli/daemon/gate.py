"""Request bodies parsed by the daemon itself, and the byte budget of large ones.

grpc's own deserialization turns a corrupt body into UNKNOWN and logs a traceback per
request. The services are registered with identity deserializers (`raw_handlers.py`)
and `RequestGate` parses the bytes: garbage (corrupt wire data, messages nested past
protobuf's depth limit) is INVALID_ARGUMENT with a short message and one rate-limited
log line that never repeats the body. Requests of `LARGE_REQUEST` bytes or more share a
budget of bytes in flight (`memory.InFlightBytes`); beyond it a request is
RESOURCE_EXHAUSTED at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Optional

import grpc

from connector_cli.daemon.bodies import BodyGate
from connector_cli.daemon.memory import InFlightBytes

logger = logging.getLogger(__name__)

LARGE_REQUEST = 1 << 20
_REASONS = (
    ("MaxDepth", "nested too deeply"),
    ("corrupt", "corrupt wire data"),
    ("UTF-8", "a string field is not UTF-8"),
)


class BadRequestLog:
    """Logs bad requests at most `burst` times per `period` seconds, then counts them."""

    def __init__(self, burst: int = 5, period: float = 10.0) -> None:
        self.burst, self.period = burst, period
        self.window_start = 0.0
        self.logged = self.suppressed = 0

    def __call__(self, method: str, size: int, reason: str) -> None:
        now = time.monotonic()
        if now - self.window_start >= self.period:
            if self.suppressed:
                logger.warning("%d more bad requests in the last %gs were not logged",
                               self.suppressed, self.period)
            self.window_start, self.logged, self.suppressed = now, 0, 0
        if self.logged >= self.burst:
            self.suppressed += 1
            return
        self.logged += 1
        logger.warning("refused a bad %s request (%d bytes): %s", method, size, reason[:200])


class Refused(Exception):
    """A body refused before a servicer runs: the status and detail to end the call with."""

    def __init__(self, code: grpc.StatusCode, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


class RequestGate:
    """Reads request bodies within `bodies`' slots, parses them and applies the byte
    budget; shared by every raw handler."""

    def __init__(self, budget: int, body_slots: int = 64,
                 bad_log: Optional[BadRequestLog] = None) -> None:
        self.inflight = InFlightBytes(budget)
        self.bodies = BodyGate(body_slots, self.inflight.trim_soon)
        self.bad_log = bad_log or BadRequestLog()
        self.refused = 0
        self._one_large: Optional[asyncio.Semaphore] = None

    @property
    def one_large(self) -> asyncio.Semaphore:
        """Held while a large request is parsed and served (made on the serving loop)."""
        if self._one_large is None:
            self._one_large = asyncio.Semaphore(1)
        return self._one_large

    def parse(self, cls: Any, data: bytes, method: str) -> Any:
        """The request message, or `Refused` INVALID_ARGUMENT for undecodable bytes."""
        try:
            return cls.FromString(data)
        except Exception as exc:  # noqa: BLE001 - DecodeError, RecursionError: any garbage
            text = str(exc)
            reason = next((r for key, r in _REASONS if key in text), "cannot be parsed")
            self.refused += 1
            self.bad_log(method, len(data), reason)
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request body is not a valid {cls.DESCRIPTOR.name}: {reason}",
            ) from None

    def admit(self, size: int, method: str) -> bool:
        """True when a large request took its share of the budget (release it later)."""
        if size < LARGE_REQUEST:
            return False
        if not self.inflight.acquire(size):
            self.refused += 1
            self.bad_log(method, size, "over the in-flight byte budget")
            raise Refused(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the daemon is busy with other large requests ({size} bytes here, "
                f"{self.inflight.used} of {self.inflight.budget} in flight); retry later",
            )
        return True
