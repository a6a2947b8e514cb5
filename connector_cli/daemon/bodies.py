"""Request bodies still arriving: how many grpc may read at once, and for how long.

grpc buffers a request message until it is complete, and opens the stream's HTTP/2
window to the whole announced size once it starts reading the message. The byte budget
of `daemon.gate` sees a body only when it is complete, so streams that announce 15 MB
and never send the last byte were held without bound (issue 28: 128 such streams took
1.9 GiB, and most of it stayed after the client left).

The daemon's methods are registered as request-streaming (`daemon.raw_handlers`), so grpc
calls a handler when the call's headers arrive and reads the body only when the handler
asks for it, through `Slots.read`: at most `count` bodies are read at a time, each for at
most `seconds`. A body still unfinished then ends its call with a status, which is what
makes grpc stop reading the stream and drop what it buffered (cancelling the handler's
task does neither). A call that finds no slot within `WAIT_SECONDS` is
RESOURCE_EXHAUSTED without its body being read; a waiting call holds only the stream's
initial window (BDP probing is off, see `daemon.server.grpc_options`).

Health and reflection have slots of their own, so a flood of unfinished connector calls
never delays a probe. A probe never waits for a slot either: it takes the slot of the
oldest probe whose body is still unfinished (a real probe's few bytes come with its
headers), so a flood of unfinished health calls cannot hold health up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, AsyncIterator, Callable, Optional

import grpc

from connector_cli.daemon.loop import running_loop, task_on

logger = logging.getLogger(__name__)

BODY_SECONDS = 10.0  # a 16 MiB body takes 1.3 s at 100 Mbit/s; the backend is in-cluster
WAIT_SECONDS = 2.0
PROBE_SECONDS = 1.0  # health and reflection bodies are a few bytes
PROBE_SLOTS = 8
PROBE_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.")
_BUSY = ("the daemon is reading too many request bodies at once (some never finish); "
         "retry later")


class Slots:
    """`count` bodies read at a time, `seconds` each. Per message this is a semaphore step
    and a dict entry (the hot path): a sweep once a second, not a timer per call, ends
    the calls whose body is late."""

    def __init__(self, count: int, seconds: float, on_timeout: Callable[[], None],
                 evict: bool = False) -> None:
        self.free = count  # slots no call holds
        self._queue: deque[asyncio.Future[bool]] = deque()  # calls waiting, oldest first
        self.count, self.seconds = count, seconds
        self.on_timeout = on_timeout
        self.evict = evict
        self.timed_out = self.refused = self.evicted = 0
        self.holders: dict[asyncio.Task[Any], float] = {}
        self._ending: dict[asyncio.Task[Any], tuple[grpc.StatusCode, str]] = {}
        self._sweeping: Optional[asyncio.TimerHandle] = None
        self.waiting = 0
        self.open = False
        self.loop = running_loop()

    async def read(self, context: Any) -> Any:
        """The call's next request message (`grpc.aio.EOF` when it has none left), read
        within a slot; the call ends RESOURCE_EXHAUSTED when no slot frees up in time and
        DEADLINE_EXCEEDED when the body does not arrive within `seconds`."""
        if self.open:
            return await context.read()
        if self.free:
            self.free -= 1
        elif not (self.evict and self._take_oldest()):
            if not await self._wait():
                self.refused += 1
                logger.warning("refused a call: no request body slot freed up within %gs",
                               WAIT_SECONDS)
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, _BUSY)
            if self.open:  # woken by the shutdown (`open_all`), which hands over no slot
                return await context.read()
        task = task_on(self.loop)
        self.holders[task] = time.monotonic()
        if self._sweeping is None:
            self._sweeping = asyncio.get_running_loop().call_later(1.0, self._sweep)
        try:
            return await context.read()
        except asyncio.CancelledError:
            ending = self._ending.pop(task, None)
            if ending is None:
                raise
            uncancel = getattr(task, "uncancel", None)  # Python 3.11+
            if uncancel is not None:
                uncancel()
            await context.abort(*ending)
        finally:
            if self.holders.pop(task, None) is not None:
                self._release()

    async def messages(self, context: Any) -> AsyncIterator[Any]:
        """Every request message of a request-streaming call, the first read within a slot.
        The later ones are not timed: a read then also waits for the client's next request
        (a reflection session between two questions), which no deadline can tell apart
        from a slow body."""
        message = await self.read(context)
        while message is not grpc.aio.EOF:
            yield message
            message = await context.read()

    async def _wait(self) -> bool:
        """Wait up to `WAIT_SECONDS` for a slot handed over by `_release`; False when none
        freed up."""
        loop = asyncio.get_running_loop()
        granted: asyncio.Future[bool] = loop.create_future()
        self._queue.append(granted)
        timer = loop.call_later(WAIT_SECONDS, _give_up, granted)
        self.waiting += 1
        try:
            return await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled() and granted.result():
                self._release()  # handed a slot just as the call was cancelled
            raise
        finally:
            timer.cancel()
            self.waiting -= 1

    def _release(self) -> None:
        """A slot given back: handed to the oldest waiting call, else free. A plain counter
        rather than `asyncio.Semaphore`, whose `acquire` and `locked` cost each body read
        a coroutine and a generator: 0.76 us against 0.04 us per take and give back, in a
        tight loop."""
        queue = self._queue
        while queue:
            granted = queue.popleft()
            if not granted.done():
                granted.set_result(True)
                return
        self.free += 1

    def _take_oldest(self) -> bool:
        """End the oldest call still reading its body and take over its slot (holders are
        kept in the order they took their slots)."""
        for task in self.holders:
            del self.holders[task]
            self.evicted += 1
            self._end(task, grpc.StatusCode.RESOURCE_EXHAUSTED,
                      "a newer call took this call's request body slot before its body "
                      "arrived")
            return True
        return False

    def _end(self, task: asyncio.Task[Any], code: grpc.StatusCode, detail: str) -> None:
        """Make `task`'s pending read end its call with `code`."""
        if not task.done():
            self._ending[task] = (code, detail)
            task.cancel()

    def open_all(self) -> None:
        """Let every call read its body without a slot, waiting ones included: at shutdown
        a call still waiting would be cancelled by grpc instead of drained."""
        self.open = True
        while self._queue:
            granted = self._queue.popleft()
            if not granted.done():
                granted.set_result(True)

    def _sweep(self) -> None:
        self._sweeping = None
        late = time.monotonic() - self.seconds
        ended = 0
        for task, since in list(self.holders.items()):
            if since < late or task.done():
                del self.holders[task]
                self._release()
                if not task.done():
                    ended += 1
                    self._end(task, grpc.StatusCode.DEADLINE_EXCEEDED,
                              f"the request body did not arrive within {self.seconds:g}s")
        if ended:
            self.timed_out += ended
            logger.warning("ended %d calls whose request body did not arrive within %gs",
                           ended, self.seconds)
            self.on_timeout()
        if self.holders:
            self._sweeping = asyncio.get_running_loop().call_later(1.0, self._sweep)


def _give_up(granted: asyncio.Future[bool]) -> None:
    if not granted.done():
        granted.set_result(False)


class BodyGate:
    """Bounds what unfinished request bodies hold: `slots` bodies being read (each up to
    the message size limit) for connector calls, `PROBE_SLOTS` for health and reflection.
    `on_timeout` is called after calls were ended for bodies that never finished (the
    daemon gives memory back to the OS then)."""

    def __init__(self, slots: int, on_timeout: Callable[[], None] = lambda: None) -> None:
        self.calls = Slots(slots, BODY_SECONDS, on_timeout)
        self.probes = Slots(PROBE_SLOTS, PROBE_SECONDS, on_timeout, evict=True)

    def slots_for(self, service: str) -> Slots:
        """The slots the calls of `service` (a full service name) read their bodies in."""
        return self.probes if service.startswith(PROBE_SERVICES) else self.calls

    def open_all(self) -> None:
        """At shutdown: no call waits for a slot any more (see `Slots.open_all`)."""
        self.calls.open_all()
        self.probes.open_all()

    @property
    def timed_out(self) -> int:
        """Calls ended because their body did not arrive in time."""
        return self.calls.timed_out + self.probes.timed_out

    @property
    def refused(self) -> int:
        """Calls refused because no slot freed up in time."""
        return self.calls.refused + self.probes.refused

    @property
    def evicted(self) -> int:
        """Probes ended to make room for a newer one (their bodies never finished)."""
        return self.probes.evicted

    def gate_requests(self, handler: grpc.GenericRpcHandler) -> grpc.GenericRpcHandler:
        """`handler` (a service of grpc's own, reflection) with the messages of its
        request-streaming methods read within its slots."""
        return _GatedRequests(handler, self)


class _GatedRequests(grpc.GenericRpcHandler):
    def __init__(self, handler: grpc.GenericRpcHandler, bodies: BodyGate) -> None:
        self._handler, self._bodies = handler, bodies

    def service(self, handler_call_details: Any) -> Any:
        method = self._handler.service(handler_call_details)
        if method is None or method.stream_stream is None:
            return method
        inner = method.stream_stream
        slots = self._bodies.slots_for(handler_call_details.method.lstrip("/"))

        async def stream_stream(requests: Any, context: Any) -> AsyncIterator[Any]:
            async for item in inner(slots.messages(context), context):
                yield item

        return method._replace(stream_stream=stream_stream)
