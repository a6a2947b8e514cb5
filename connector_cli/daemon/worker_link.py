"""A `serve --processes N` worker's side of its supervisor (`daemon/supervisor.py`).

`WorkerLink` writes the worker's metrics snapshot (first write = ready) to the shared
directory every `FLUSH_S` seconds, where the supervisor sums them for its one /metrics,
and stops the worker if the supervising parent disappears.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any, Callable, Optional

logger = logging.getLogger(__name__)

FLUSH_S = 0.5


class WorkerLink:
    """A worker's link to its supervisor: metrics snapshots and a parent watchdog."""

    def __init__(self, directory: str, metrics: Any) -> None:
        self.path = os.path.join(directory, f"{os.getpid()}.json")
        self.metrics = metrics
        self.parent = os.getppid()
        self._last: Optional[str] = None
        self.flush()
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._on_orphan: Optional[Callable[[], None]] = None

    def flush(self) -> None:
        """Write the snapshot (atomically) when it changed."""
        data = json.dumps(self.metrics.snapshot())
        if data == self._last:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(data)
        os.replace(tmp, self.path)
        self._last = data

    def watch_parent(self, on_orphan: Callable[[], None]) -> None:
        """Call `on_orphan` once if the supervising parent goes away."""
        self._on_orphan = on_orphan

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            try:
                self.flush()
            except OSError as exc:
                logger.warning("cannot write metrics for the supervisor: %s", exc)
            orphan = self._on_orphan
            if orphan is not None and os.getppid() != self.parent:
                self._on_orphan = None
                orphan()

    def close(self) -> None:
        """Final snapshot; stop the loop task."""
        self._task.cancel()
        try:
            self.flush()
        except OSError:
            pass
