"""The /metrics endpoint, served by the daemon's own event loop.

The port is bound when the daemon starts (so a taken port is a start-up error and `0`
resolves at once), but prometheus_client's exposition code (about 150 ms of imports with
http.server, email and wsgiref, and a few MiB) is imported only by the first scrape, in a
worker thread, so it neither delays the first gRPC answer nor weighs on a daemon that is
never scraped. No extra thread waits for connections.

Beside the daemon's own collector the endpoint serves prometheus_client's default
registry, as the Flyte SDK's server does: the process_* and python_* collectors, and any
metric a connector registers there itself. A default-registry family with one of the
daemon's own names (the Flyte SDK declares `c0`'s series at import) is left out: the
daemon's figures are the ones that count its requests.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any, Iterator, Optional

from connector_cli.daemon.addresses import passive_address

MAX_HEAD = 16 * 1024
READ_TIMEOUT_S = 10.0


class MetricsEndpoint:
    """HTTP GET /metrics (or /) for one collector (an object with `collect()`)."""

    def __init__(self, collector: Any) -> None:
        self.collector = collector
        self.port = 0
        self._server: Optional[asyncio.AbstractServer] = None
        self._registry: Any = None
        self._lock = threading.Lock()

    async def start(self, host: str, port: int) -> int:
        """Bind and listen on host:port (0 = ephemeral); the bound port. OSError if taken."""
        family, kind, proto, _, address = passive_address(host, port)
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(64)
            sock.setblocking(False)
            self._server = await asyncio.start_server(self._answer, sock=sock)
        except OSError:
            sock.close()
            raise
        self.port = int(sock.getsockname()[1])
        return self.port

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def render(self, accept: str) -> tuple[bytes, str]:
        """The exposition text for an Accept header, and its content type."""
        from prometheus_client import CollectorRegistry
        from prometheus_client.exposition import choose_encoder

        with self._lock:
            if self._registry is None:
                self._registry = CollectorRegistry(auto_describe=False)
                self._registry.register(self.collector)
                self._registry.register(DefaultRegistry())
        encoder, content_type = choose_encoder(accept)
        return encoder(self._registry), content_type

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            status, body, content_type = await self._respond(head)
            if head.split(b" ", 1)[0] == b"HEAD":
                body = b""
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass
        finally:
            writer.close()

    async def _respond(self, head: bytes) -> tuple[str, bytes, str]:
        lines = head[:MAX_HEAD].decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
            return "405 Method Not Allowed", b"only GET /metrics\n", "text/plain"
        if parts[1].split("?", 1)[0] not in ("/", "/metrics"):
            return "404 Not Found", b"see /metrics\n", "text/plain"
        accept = ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "accept":
                accept = value.strip()
        body, content_type = await asyncio.to_thread(self.render, accept)
        return "200 OK", body, content_type


class DefaultRegistry:
    """prometheus_client's default registry, minus the families the daemon exports."""

    def collect(self) -> Iterator[Any]:
        """The default registry's families whose names the daemon does not export."""
        from prometheus_client import REGISTRY

        from connector_cli.daemon.metrics import FAMILIES, PREFIX

        for family in REGISTRY.collect():
            if not (family.name.startswith(PREFIX) and family.name[len(PREFIX):] in FAMILIES):
                yield family
