"""Memory that large requests hold: a budget of bytes in flight, and giving freed heap
back to the OS after a burst (glibc keeps it otherwise, and RSS would stay at the peak).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
from typing import Callable, Optional

logger = logging.getLogger(__name__)

TRIM_DELAYS = (0.5, 3.0)  # again later: grpc lets go of some buffers only after a while


class InFlightBytes:
    """The byte budget large requests share; memory is trimmed when the last one ends."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.trims = 0
        self._trimming: Optional[asyncio.Future[None]] = None

    def acquire(self, size: int) -> bool:
        """Take `size` bytes of the budget; False when that would exceed it (one request
        alone is always let through: the message size limit bounds it)."""
        if self.used and self.used + size > self.budget:
            return False
        self.used += size
        return True

    def release(self, size: int) -> None:
        """Give `size` bytes back; shortly after the last large request (once grpc has
        dropped its buffers and the response is sent), return memory to the OS."""
        self.used -= size
        if self.used == 0:
            self.trim_soon()

    def trim_soon(self) -> None:
        """Return memory to the OS shortly, unless large requests are in flight by then."""
        loop = asyncio.get_running_loop()
        for delay in TRIM_DELAYS:
            loop.call_later(delay, self._start_trim)

    def _start_trim(self) -> None:
        if self.used or (self._trimming is not None and not self._trimming.done()):
            return
        self._trimming = asyncio.get_running_loop().run_in_executor(None, self._trim)

    def _trim(self) -> None:
        before = rss_mib()
        release_memory()
        self.trims += 1
        logger.debug("after large requests: RSS %.1f -> %.1f MiB", before, rss_mib())


@functools.cache
def _malloc_trim() -> Optional[Callable[[int], int]]:
    """glibc's `malloc_trim`, or None on other C libraries (ctypes is loaded only here: the
    daemon needs it after a burst of large requests, if ever)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError, TypeError):
        return None


def rss_mib() -> float:
    """This process's resident memory in MiB (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * _PAGE / (1 << 20)


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc keeps them)."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
