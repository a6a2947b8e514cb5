"""Request bodies still arriving: how many grpc may hold at once, and for how long.

grpc buffers a request message until it is complete, and opens the stream's HTTP/2
window to the whole announced size once it starts reading the message. The byte budget
of `daemon.requests` sees a body only when it is complete, so streams that announce 15 MB
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
import inspect
import logging
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
    """`count` bodies read at a time, `seconds` each."""

    def __init__(self, count: int, seconds: float, on_timeout: Callable[[], None]) -> None:
        self.free = asyncio.Semaphore(count)
        self.count, self.seconds = count, seconds
        self.on_timeout = on_timeout
        self.timed_out = self.refused = 0

    async def enter(self) -> Optional[Callable[..., None]]:
        """A slot for the current call (None when none frees up within `WAIT_SECONDS`): the
        function that gives it back. The call is cancelled if that is not called within
        `seconds`."""
        if self.free.locked():
            try:
                await asyncio.wait_for(self.free.acquire(), WAIT_SECONDS)
            except asyncio.TimeoutError:
                self.refused += 1
                return None
        else:
            await self.free.acquire()
        task = asyncio.current_task()
        assert task is not None
        held = [True]

        def leave(*done: asyncio.Task[Any]) -> None:
            if held[0]:
                held[0] = False
                timer.cancel()
                self.free.release()
                if done and done[0].cancelled():  # the client left mid-body
                    self.on_timeout()

        def expire() -> None:
            if held[0]:
                self.timed_out += 1
                task.cancel()
                leave()
                self.on_timeout()

        timer = asyncio.get_running_loop().call_later(self.seconds, expire)
        task.add_done_callback(leave)
        return leave


class BodyGate(grpc.aio.ServerInterceptor):
    """Bounds what unfinished request bodies hold: `slots` bodies being read (each up to
    the message size limit) for connector calls, `PROBE_SLOTS` for health and reflection.
    `on_timeout` is called after a call was cancelled for a body that never finished
    (the daemon gives memory back to the OS then)."""

    def __init__(self, slots: int, on_timeout: Callable[[], None] = lambda: None) -> None:
        self.calls = _Slots(slots, BODY_SECONDS, on_timeout)
        self.probes = _Slots(PROBE_SLOTS, PROBE_SECONDS, on_timeout)

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
        leave = await (self.probes if method.startswith(_PROBES) else self.calls).enter()
        if leave is None:
            logger.warning("refused a %s call: no request body slot freed up within %gs",
                           method.rsplit("/", 1)[-1], WAIT_SECONDS)
            return _refusal(handler)
        return _releasing(handler, leave)


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


def _releasing(handler: grpc.RpcMethodHandler, leave: Callable[[], None]) -> Any:
    """`handler` with its behaviour giving the slot back first."""
    if handler.unary_unary is not None:
        inner = handler.unary_unary

        async def unary(request: Any, context: Any) -> Any:
            leave()
            return await inner(request, context)

        return handler._replace(unary_unary=unary)  # type: ignore[attr-defined]
    if handler.unary_stream is not None:
        stream = handler.unary_stream
        if not inspect.isasyncgenfunction(stream):  # writes with context.write
            async def writing(request: Any, context: Any) -> Any:
                leave()
                return await stream(request, context)

            return handler._replace(unary_stream=writing)  # type: ignore[attr-defined]

        async def streaming(request: Any, context: Any) -> Any:
            leave()
            async for item in stream(request, context):
                yield item

        return handler._replace(unary_stream=streaming)  # type: ignore[attr-defined]
    return handler
