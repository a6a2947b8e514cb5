"""An event loop of its own, in a thread of its own, for a connector that may block.

A connector whose `async def` methods call blocking client libraries would stall every
other request on the daemon's loop. A connector that sets `own_loop = True` gets one
`LoopThread`: all of its coroutines run there, so a blocking call only delays that
connector, while loop-bound resources it caches (sessions, connection pools keyed by the
running loop) keep working because every call of that connector runs on the same loop.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any, AsyncIterator, Awaitable, Coroutine, TypeVar

_T = TypeVar("_T")


class LoopThread:
    """A daemon thread running one event loop; `run` awaits a coroutine on it."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, _T]) -> Awaitable[_T]:
        """Schedule `coro` on this loop; awaiting the result from another loop waits for it,
        and cancelling that await cancels the coroutine here."""
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def iterate(self, agen: AsyncIterator[_T]) -> AsyncIterator[_T]:
        """Drive an async generator living on this loop from another loop, page by page."""
        try:
            while True:
                try:
                    item = await self.run(_anext(agen))
                except StopAsyncIteration:
                    return
                yield item
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                await self.run(aclose())


async def _anext(agen: AsyncIterator[_T]) -> _T:
    return await agen.__anext__()


_LOOPS: weakref.WeakKeyDictionary[Any, LoopThread] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def loop_of(owner: Any) -> LoopThread:
    """The loop thread of `owner` (a connector instance), started on first use."""
    with _LOCK:
        found = _LOOPS.get(owner)
        if found is None:
            name = f"connector-loop-{getattr(owner, 'task_type_name', '') or type(owner).__name__}"
            found = _LOOPS[owner] = LoopThread(name)
        return found
