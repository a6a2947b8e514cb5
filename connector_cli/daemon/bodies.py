"""Request bodies still arriving: how many grpc may hold at once, and for how long.

grpc buffers a request message until it is complete, and opens the stream's HTTP/2
window to the whole announced size once it starts reading the message. The byte budget
of `daemon.gate` sees a body only when it is complete, so streams that announce 15 MB
and never send the last byte were held without bound (issue 28: 128 such streams took
1.9 GiB, and most of it stayed after the client left). `BodyGate` is a server interceptor
that runs when a call's headers arrive, before grpc reads the body: at most `slots`
bodies are read at a time, each for at most `BODY_SECONDS` (then the call is cancelled),
and a call that finds no slot within `WAIT_SECONDS` is RESOURCE_EXHAUSTED without its
body being read. A waiting call holds only the stream's initial window (BDP probing is
off, see `daemon.server.grpc_options`). Health and reflection have slots of their own,
so a flood of unfinished connector calls never delays a health probe.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
from typing import Any, Awaitable, Callable, Optional

import grpc
import grpc.aio

logger = logging.getLogger(__name__)

BODY_SECONDS = 10.0  # a 16 MiB body takes 1.3 s at 100 Mbit/s; the backend is in-cluster
WAIT_SECONDS = 2.0
PROBE_SECONDS = 1.0  # health and reflection bodies are a few bytes
PROBE_SLOTS = 8
_PROBES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
_BUSY = ("the daemon is reading too many request bodies at once (some never finish); "
         "retry later")


class _Slots:
    """`count` bodies read at a time, `seconds` each. Per call this is a semaphore step
    and a dict entry (the hot path): a sweep once a second, not a timer per call, cancels
    calls whose body is late and frees the slots of calls that ended before their body
    was complete."""

    def __init__(self, count: int, seconds: float, on_timeout: Callable[[], None]) -> None:
        self.free = asyncio.Semaphore(count)
        self.count, self.seconds = count, seconds
        self.on_timeout = on_timeout
        self.timed_out = self.refused = 0
        self.holders: dict[asyncio.Task[Any], float] = {}
        self._sweeping: Optional[asyncio.TimerHandle] = None
        self.waiting = 0
        self.open = False

    async def enter(self) -> bool:
        """Take a slot for the current call (False when none frees up within
        `WAIT_SECONDS`); `leave` gives it back."""
        if self.open:
            return True
        if self.free.locked():
            self.waiting += 1
            try:
                await asyncio.wait_for(self.free.acquire(), WAIT_SECONDS)
            except asyncio.TimeoutError:
                self.refused += 1
                return False
            finally:
                self.waiting -= 1
            if self.open:
                return True
        else:
            await self.free.acquire()
        task = asyncio.current_task()
        assert task is not None
        self.holders[task] = time.monotonic()
        if self._sweeping is None:
            self._sweeping = asyncio.get_running_loop().call_later(1.0, self._sweep)
        return True

    def open_all(self) -> None:
        """Let every call read its body without a slot, waiting ones included: at shutdown
        a call still waiting would be cancelled by grpc instead of drained."""
        self.open = True
        for _ in range(self.waiting):
            self.free.release()

    def leave(self) -> None:
        """Give back the current call's slot (its body is complete)."""
        if self.holders.pop(asyncio.current_task(), None) is not None:  # type: ignore[arg-type]
            self.free.release()

    def _sweep(self) -> None:
        self._sweeping = None
        late = time.monotonic() - self.seconds
        gone = False
        for task, since in list(self.holders.items()):
            if task.done() or since < late:
                del self.holders[task]
                self.free.release()
                gone = True
                if not task.done():
                    self.timed_out += 1
                    task.cancel()
        if gone:
            self.on_timeout()
        if self.holders:
            self._sweeping = asyncio.get_running_loop().call_later(1.0, self._sweep)


_SLOTS: contextvars.ContextVar[_Slots] = contextvars.ContextVar("body_slots")


class BodyGate(grpc.aio.ServerInterceptor):
    """Bounds what unfinished request bodies hold: `slots` bodies being read (each up to
    the message size limit) for connector calls, `PROBE_SLOTS` for health and reflection.
    `on_timeout` is called after a call was cancelled for a body that never finished
    (the daemon gives memory back to the OS then)."""

    def __init__(self, slots: int, on_timeout: Callable[[], None] = lambda: None) -> None:
        self.calls = _Slots(slots, BODY_SECONDS, on_timeout)
        self.probes = _Slots(PROBE_SLOTS, PROBE_SECONDS, on_timeout)
        self._wrapped: dict[int, tuple[Any, Any]] = {}  # each handler wrapped once

    def open_all(self) -> None:
        """At shutdown: no call waits for a slot any more (see `_Slots.open_all`)."""
        self.calls.open_all()
        self.probes.open_all()

    @property
    def timed_out(self) -> int:
        """Calls cancelled because their body did not arrive in time."""
        return self.calls.timed_out + self.probes.timed_out

    @property
    def refused(self) -> int:
        """Calls refused because no slot freed up in time."""
        return self.calls.refused + self.probes.refused

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails],
                                     Awaitable[Optional[grpc.RpcMethodHandler]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Optional[grpc.RpcMethodHandler]:
        """Wait for a slot, then hand grpc a handler that gives it back once the body is
        complete (grpc calls the handler only then)."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        slots = self.probes if method.startswith(_PROBES) else self.calls
        if not await slots.enter():
            logger.warning("refused a %s call: no request body slot freed up within %gs",
                           method.rsplit("/", 1)[-1], WAIT_SECONDS)
            return _refusal(handler)
        _SLOTS.set(slots)  # the same context reaches the handler (grpc.aio's contract)
        wrapped = self._wrapped.get(id(handler))
        if wrapped is None or wrapped[0] is not handler:
            wrapped = (handler, _releasing(handler))
            if len(self._wrapped) < 256:  # handlers are made once per method
                self._wrapped[id(handler)] = wrapped
        return wrapped[1]


def _refusal(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler that answers RESOURCE_EXHAUSTED without reading the body (grpc reads a
    request-streaming call's messages only when asked)."""

    async def refuse(requests: Any, context: Any) -> None:
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, _BUSY)

    if handler.response_streaming:
        async def refuse_stream(requests: Any, context: Any) -> Any:
            await refuse(requests, context)
            yield  # pragma: no cover - abort raised

        return grpc.stream_stream_rpc_method_handler(refuse_stream)
    return grpc.stream_unary_rpc_method_handler(refuse)


def _leave() -> None:
    """Give back the slot the current call took (its body is complete: grpc is calling
    the handler)."""
    _SLOTS.get().leave()


def _releasing(handler: grpc.RpcMethodHandler) -> Any:
    """`handler` with its behaviour giving the call's slot back first."""
    if handler.unary_unary is not None:
        inner = handler.unary_unary

        async def unary(request: Any, context: Any) -> Any:
            _leave()
            return await inner(request, context)

        return handler._replace(unary_unary=unary)  # type: ignore[attr-defined]
    if handler.unary_stream is not None:
        stream = handler.unary_stream
        if not inspect.isasyncgenfunction(stream):  # writes with context.write
            async def writing(request: Any, context: Any) -> Any:
                _leave()
                return await stream(request, context)

            return handler._replace(unary_stream=writing)  # type: ignore[attr-defined]

        async def streaming(request: Any, context: Any) -> Any:
            _leave()
            async for item in stream(request, context):
                yield item

        return handler._replace(unary_stream=streaming)  # type: ignore[attr-defined]
    return handler
