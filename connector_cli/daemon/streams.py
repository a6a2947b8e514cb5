"""Server streams end when the daemon starts draining, so none holds a shutdown.

`server.stop(grace)` waits for every open call. A unary call ends by itself within
moments; a stream may not: a GetTaskLogs that follows a job, a `grpcurl` reflection
session. `until_draining` passes a stream's items on until the drain begins, then ends
the call with UNAVAILABLE, which clients retry (on another replica, or on this daemon
once it is back). Health `Watch` streams end their own way (`daemon/health.py`).
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, TypeVar

import grpc

T = TypeVar("T")
SHUTTING_DOWN = "the daemon is shutting down; call again"


async def until_draining(items: AsyncIterator[T], draining: asyncio.Event,
                         context: Any) -> AsyncIterator[T]:
    """Yield from `items` until `draining` is set; then abort the call with UNAVAILABLE."""
    drained = asyncio.ensure_future(draining.wait())
    try:
        while True:
            step = asyncio.ensure_future(items.__anext__())  # type: ignore[arg-type]
            await asyncio.wait({step, drained}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                step.cancel()
                await asyncio.gather(step, return_exceptions=True)
                await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        drained.cancel()
        close = getattr(items, "aclose", None)
        if close is not None:
            await close()


def draining_streams(handler: grpc.GenericRpcHandler,
                     draining: asyncio.Event) -> grpc.GenericRpcHandler:
    """`handler` with every server-streaming method ended by `until_draining`."""
    return _Draining(handler, draining)


class _Draining(grpc.GenericRpcHandler):
    def __init__(self, handler: grpc.GenericRpcHandler, draining: asyncio.Event) -> None:
        self._handler, self._draining = handler, draining

    def service(self, handler_call_details: Any) -> Any:
        method = self._handler.service(handler_call_details)
        if method is None:
            return None
        draining = self._draining
        if method.stream_stream is not None:
            inner = method.stream_stream

            async def stream_stream(requests: Any, context: Any) -> AsyncIterator[Any]:
                async for item in until_draining(inner(requests, context), draining, context):
                    yield item

            return method._replace(stream_stream=stream_stream)
        if method.unary_stream is not None:
            inner_unary = method.unary_stream

            async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                async for item in until_draining(inner_unary(request, context), draining,
                                                 context):
                    yield item

            return method._replace(unary_stream=unary_stream)
        return method
