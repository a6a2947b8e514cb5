"""Request bodies as the daemon receives them: parsed here, bounded here.

grpc's own deserialization turns a corrupt body into UNKNOWN and logs a traceback per
request. Registering the services with identity deserializers lets the daemon parse the
bytes itself: garbage (corrupt wire data, messages nested past protobuf's depth limit) is
INVALID_ARGUMENT with a short message and one rate-limited log line that never repeats the
body. Requests of `LARGE_REQUEST` bytes or more share a budget of bytes in flight (parsing
and serving one costs a few times its size in memory); beyond it a request is
RESOURCE_EXHAUSTED at once, and memory is given back to the OS after a burst.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import logging
import os
import time
from typing import Any, AsyncIterator, Callable, Optional

import grpc

logger = logging.getLogger(__name__)

LARGE_REQUEST = 1 << 20
TRIM_DELAYS = (0.5, 3.0)  # again later: grpc lets go of some buffers only after a while
_REASONS = (
    ("MaxDepth", "nested too deeply"),
    ("corrupt", "corrupt wire data"),
    ("UTF-8", "a string field is not UTF-8"),
)


class BadRequestLog:
    """Logs bad requests at most `burst` times per `period` seconds, then counts them."""

    def __init__(self, burst: int = 5, period: float = 10.0) -> None:
        self.burst, self.period = burst, period
        self.window_start = 0.0
        self.logged = self.suppressed = 0

    def __call__(self, method: str, size: int, reason: str) -> None:
        now = time.monotonic()
        if now - self.window_start >= self.period:
            if self.suppressed:
                logger.warning("%d more bad requests in the last %gs were not logged",
                               self.suppressed, self.period)
            self.window_start, self.logged, self.suppressed = now, 0, 0
        if self.logged >= self.burst:
            self.suppressed += 1
            return
        self.logged += 1
        logger.warning("refused a bad %s request (%d bytes): %s", method, size, reason[:200])


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


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


class RequestGate:
    """Parses request bodies and applies the byte budget; shared by every raw handler."""

    def __init__(self, budget: int, bad_log: Optional[BadRequestLog] = None) -> None:
        self.inflight = InFlightBytes(budget)
        self.bad_log = bad_log or BadRequestLog()
        self.refused = 0
        self._one_large: Optional[asyncio.Semaphore] = None

    @property
    def one_large(self) -> asyncio.Semaphore:
        """Held while a large request is parsed and served (made on the serving loop)."""
        if self._one_large is None:
            self._one_large = asyncio.Semaphore(1)
        return self._one_large

    def parse(self, cls: Any, data: bytes, method: str) -> Any:
        """The request message, or `_Refused` INVALID_ARGUMENT for undecodable bytes."""
        try:
            return cls.FromString(data)
        except Exception as exc:  # noqa: BLE001 - DecodeError, RecursionError: any garbage
            text = str(exc)
            reason = next((r for key, r in _REASONS if key in text), "cannot be parsed")
            self.refused += 1
            self.bad_log(method, len(data), reason)
            raise _Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request body is not a valid {cls.DESCRIPTOR.name}: {reason}",
            ) from None

    def admit(self, size: int, method: str) -> bool:
        """True when a large request took its share of the budget (release it later)."""
        if size < LARGE_REQUEST:
            return False
        if not self.inflight.acquire(size):
            self.refused += 1
            self.bad_log(method, size, "over the in-flight byte budget")
            raise _Refused(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the daemon is busy with other large requests ({size} bytes here, "
                f"{self.inflight.used} of {self.inflight.budget} in flight); retry later",
            )
        return True


def _open(gate: RequestGate, cls: Any, method: str, data: bytes) -> tuple[Any, int]:
    """Admit and parse a body: (request, bytes held), or `_Refused` having given back any
    budget it took. Plain `def`: a small valid body costs no coroutine here."""
    held = len(data) if gate.admit(len(data), method) else 0
    try:
        return gate.parse(cls, data, method), held
    except _Refused:
        if held:
            gate.inflight.release(held)
        raise


async def _refuse(context: Any, refused: _Refused) -> None:
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
    except _Refused as refused:
        await _refuse(context, refused)
        raise
    try:
        async with gate.one_large:
            loop = asyncio.get_running_loop()
            try:
                request = await loop.run_in_executor(None, gate.parse, cls, data, method)
            except _Refused as refused:
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
        except _Refused as refused:
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
                except _Refused as refused:
                    await _refuse(context, refused)
                    raise

        async for item in handler(parsed(), context):
            yield item

    return handle


class BuiltOnFirstCall(grpc.GenericRpcHandler):
    """The handler of service `name`, made by `build` when one of its methods is first
    called: a service nobody calls before the daemon is ready (health, reflection) costs
    its imports later, not at start-up."""

    def __init__(self, name: str, build: Callable[[], grpc.GenericRpcHandler]) -> None:
        self._prefix = f"/{name}/"
        self._build = build
        self._handler: Optional[grpc.GenericRpcHandler] = None

    def service(self, handler_call_details: Any) -> Optional[grpc.RpcMethodHandler]:
        """The method's handler; None for a method of another service."""
        if not handler_call_details.method.startswith(self._prefix):
            return None
        if self._handler is None:
            self._handler = self._build()
        return self._handler.service(handler_call_details)


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
