"""The services registered over raw bytes: each method's body is read within a slot of
the daemon's `BodyGate` (`bodies.py`) and parsed by its `RequestGate` (`gate.py`), large
bodies one at a time and off the event loop, so a bad, oversized or unfinished body gets
its own status and never reaches a servicer.

Every method is registered as request-streaming, whatever its shape, so grpc calls the
handler when the headers arrive and reads the body only when `Slots.read` asks for it;
on the wire a unary call is the same one message.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, AsyncIterator

import grpc

from connector_cli.daemon.bodies import Slots
from connector_cli.daemon.gate import LARGE_REQUEST, Refused, RequestGate

_NO_MESSAGE = "the call carried no request message"
EOF = grpc.aio.EOF


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


async def _body(slots: Slots, context: Any) -> bytes:
    """The call's one request body, read within a slot."""
    data = await slots.read(context)
    if data is EOF:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _NO_MESSAGE)
    return data  # type: ignore[no-any-return]


def _unary(gate: RequestGate, slots: Slots, cls: Any, method: str, handler: Any) -> Any:
    """A unary handler over raw bytes. It answers bytes: a handler may return its response
    already serialized (the daemon's GetTask and CreateTask do), or a message."""
    parse = cls.FromString
    read = slots.read

    async def handle(requests: Any, context: Any) -> bytes:
        data = await read(context)
        if data is EOF:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _NO_MESSAGE)
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


def _stream(gate: RequestGate, slots: Slots, cls: Any, method: str, handler: Any) -> Any:
    """A server-streaming handler over raw bytes: an async generator, or a coroutine that
    writes with `context.write` (health's Watch)."""
    if not inspect.isasyncgenfunction(handler):
        async def write(requests: Any, context: Any) -> None:
            request, held = await _opened(gate, slots, cls, method, context)
            try:
                await handler(request, context)
            finally:
                if held:
                    gate.inflight.release(held)

        return write

    async def handle(requests: Any, context: Any) -> AsyncIterator[Any]:
        request, held = await _opened(gate, slots, cls, method, context)
        try:
            async for item in handler(request, context):
                yield item
        finally:
            if held:
                gate.inflight.release(held)

    return handle


async def _opened(gate: RequestGate, slots: Slots, cls: Any, method: str,
                  context: Any) -> tuple[Any, int]:
    """The call's request read within a slot and parsed (see `_open`), or the call ended
    with the refusal's status."""
    try:
        return _open(gate, cls, method, await _body(slots, context))
    except Refused as refused:
        await _refuse(context, refused)
        raise


def _bidi(gate: RequestGate, slots: Slots, cls: Any, method: str, handler: Any) -> Any:
    """A stream-stream handler over raw bytes: each request message read within a slot and
    parsed by `gate`."""

    async def handle(requests: Any, context: Any) -> AsyncIterator[Any]:
        async def parsed() -> AsyncIterator[Any]:
            async for data in slots.messages(context):
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
    """The generic handler `add_raw_service` registers. A servicer's `parsed_as` may name,
    per method, a message class of the same wire shape to parse the body into (the Flyte 1
    servicers take some requests as their Flyte 2 forms: one parse instead of three)."""
    from google.protobuf import message_factory

    handlers = {}
    slots = gate.bodies.slots_for(service.full_name)
    parsed_as = getattr(servicer, "parsed_as", {})
    for method in service.methods:
        cls = parsed_as.get(method.name) or message_factory.GetMessageClass(method.input_type)
        serialize = message_factory.GetMessageClass(method.output_type).SerializeToString
        impl = getattr(servicer, method.name)
        if method.client_streaming:
            if not method.server_streaming:
                raise ValueError(f"{service.full_name}.{method.name} streams only requests")
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                _bidi(gate, slots, cls, method.name, impl), response_serializer=serialize)
        elif method.server_streaming:
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                _stream(gate, slots, cls, method.name, impl), response_serializer=serialize)
        else:
            handlers[method.name] = grpc.stream_unary_rpc_method_handler(
                _unary(gate, slots, cls, method.name, impl))
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
