"""The services registered over raw bytes: each method's body is parsed by the daemon's
`RequestGate` (`gate.py`), large bodies one at a time and off the event loop, so a bad or
oversized body gets its own status and never reaches a servicer.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, AsyncIterator

import grpc

from connector_cli.daemon.gate import LARGE_REQUEST, Refused, RequestGate


def _open(gate: RequestGate, cls: Any, method: str, data: bytes) -> tuple[Any, int]:
    """Admit and parse a body: (request, bytes held), or `Refused` having given back any
    budget it took. Plain `def`: a small valid body costs no coroutine here."""
    held = len(data) if gate.admit(len(data), method) else 0
    try:
        return gate.parse(cls, data, method), held
    except Refused:
        if held:
            gate.inflight.release(held)
        raise


async def _refuse(context: Any, refused: Refused) -> None:
    """Abort the RPC with the refusal's status (this raises)."""
    await context.abort(refused.code, refused.detail)


def _unary(gate: RequestGate, cls: Any, method: str, handler: Any) -> Any:
    """A unary handler over raw bytes. It answers bytes: a handler may return its response
    already serialized (the daemon's GetTask and CreateTask do), or a message."""
    parse = cls.FromString

    async def handle(data: bytes, context: Any) -> bytes:
        try:
            request = parse(data) if len(data) < LARGE_REQUEST else None
        except Exception:  # noqa: BLE001 - garbage: `_large` refuses it with its reason
            request = None
        if request is None:
            response = await _large(gate, cls, method, handler, data, context)
        else:
            response = await handler(request, context)
        return response if response.__class__ is bytes else response.SerializeToString()

    return handle


async def _large(gate: RequestGate, cls: Any, method: str, handler: Any, data: bytes,
                 context: Any) -> Any:
    """Serve a large body (or refuse a garbage one): within the byte budget, one large
    request at a time, parsed off the event loop. Parsing and serving a body costs several
    times its size (literal collections: over ten times), so concurrent large requests
    within the budget still took 1 GiB (issue 28)."""
    try:
        held = len(data) if gate.admit(len(data), method) else 0
        if not held:
            return await handler(gate.parse(cls, data, method), context)
    except Refused as refused:
        await _refuse(context, refused)
        raise
    try:
        async with gate.one_large:
            loop = asyncio.get_running_loop()
            try:
                request = await loop.run_in_executor(None, gate.parse, cls, data, method)
            except Refused as refused:
                await _refuse(context, refused)
                raise
            return await handler(request, context)
    finally:
        gate.inflight.release(held)


def _stream(gate: RequestGate, cls: Any, method: str, handler: Any) -> Any:
    if not inspect.isasyncgenfunction(handler):  # streams with context.write (health Watch)
        return _unary(gate, cls, method, handler)

    async def handle(data: bytes, context: Any) -> AsyncIterator[Any]:
        try:
            request, held = _open(gate, cls, method, data)
        except Refused as refused:
            await _refuse(context, refused)
            raise
        try:
            async for item in handler(request, context):
                yield item
        finally:
            if held:
                gate.inflight.release(held)

    return handle


def _bidi(gate: RequestGate, cls: Any, method: str, handler: Any) -> Any:
    """A stream-stream handler over raw bytes: each request message parsed by `gate`."""

    async def handle(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[Any]:
        async def parsed() -> AsyncIterator[Any]:
            async for data in requests:
                try:
                    yield gate.parse(cls, data, method)
                except Refused as refused:
                    await _refuse(context, refused)
                    raise

        async for item in handler(parsed(), context):
            yield item

    return handle


def add_raw_service(server: Any, service: Any, servicer: Any, gate: RequestGate) -> None:
    """Register `servicer`'s methods for the service descriptor `service`, taking raw bytes."""
    server.add_generic_rpc_handlers((raw_handler(service, servicer, gate),))


def raw_handler(service: Any, servicer: Any, gate: RequestGate) -> grpc.GenericRpcHandler:
    """The generic handler `add_raw_service` registers."""
    from google.protobuf import message_factory

    handlers = {}
    for method in service.methods:
        cls = message_factory.GetMessageClass(method.input_type)
        serialize = message_factory.GetMessageClass(method.output_type).SerializeToString
        impl = getattr(servicer, method.name)
        if method.client_streaming:
            if not method.server_streaming:
                raise ValueError(f"{service.full_name}.{method.name} streams only requests")
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                _bidi(gate, cls, method.name, impl), response_serializer=serialize)
        elif method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                _stream(gate, cls, method.name, impl), response_serializer=serialize)
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                _unary(gate, cls, method.name, impl))
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
