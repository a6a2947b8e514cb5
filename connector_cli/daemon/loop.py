"""The event loop the daemon runs on: uvloop when it is installed, else asyncio's own.

uvloop (a dependency on Linux and macOS) does the loop's scheduling, timers and socket
polling in C; grpc.aio's server runs on it unchanged and spends about 15 % less CPU per
RPC (measured with `make bench`). `FLYTE_CONNECTOR_UVLOOP=0` keeps asyncio's loop.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Coroutine, Optional, TypeVar

T = TypeVar("T")
ENV = "FLYTE_CONNECTOR_UVLOOP"


def uvloop_module() -> Any:
    """The uvloop module when it is installed and not turned off, else None."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, on uvloop when `uvloop_module()` has it."""
    uvloop = uvloop_module()
    if uvloop is None:
        return asyncio.run(main)
    return uvloop.run(main)  # type: ignore[no-any-return]


def loop_name() -> str:
    """'uvloop' or 'asyncio': what the running loop is, for the start-up log line."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"


def running_loop() -> Optional[asyncio.AbstractEventLoop]:
    """The running loop, or None outside one: what the daemon's per-call objects keep for
    `task_on`."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def task_on(loop: Optional[asyncio.AbstractEventLoop]) -> "asyncio.Task[Any]":
    """The running task, looked up on `loop` (kept when the caller was built) and else on
    the running loop. On Python 3.11 `asyncio.current_task()` finds the loop with a getpid
    system call; the daemon's hot path made two of them per RPC, the floor none (strace:
    4 getpid calls per GetTask against the floor's 2)."""
    task = asyncio.current_task(loop) if loop is not None else None
    if task is None:
        task = asyncio.current_task()
    assert task is not None, "called outside a task"
    return task
