"""Raw HTTP/2 clients for hostile-input tests: gRPC request bodies that never finish, and
connections that never send anything.

A gRPC message is a 5-byte prefix (flag, 4-byte length) and the bytes. `Unfinished` opens
streams on one connection, announces `size` bytes for each and sends all but the last,
as fast as the server's flow-control windows let it, then holds the streams open: grpc
buffers each body until it is complete, which is what item 2 of issue 28 is about.
"""

from __future__ import annotations

import asyncio
import select
import socket
import struct
import time
from typing import Optional

import h2.config
import h2.connection
import h2.events

CREATE = "/flyteidl2.connector.AsyncConnectorService/CreateTask"


class Unfinished:
    """One connection holding `streams` CreateTask bodies of `size` bytes, one byte short;
    with `reopen`, a stream the server ends is replaced by a new one at once."""

    def __init__(self, address: str, streams: int, size: int, path: str = CREATE,
                 reopen: bool = False) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.sent = 0
        self.closed = False
        self.reset = 0
        self.pending: dict[int, memoryview] = {}
        self.size = size
        self.path = path
        self.reopen = reopen
        self._flush()
        for _ in range(streams):
            self._open()

    def _open(self) -> None:
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream, [
            (":method", "POST"), (":scheme", "http"), (":path", self.path),
            (":authority", "localhost"), ("content-type", "application/grpc"), ("te", "trailers"),
        ])
        self.pending[stream] = memoryview(struct.pack(">BI", 0, self.size) + bytes(self.size - 1))

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, seconds: float) -> int:
        """Send what the windows allow and read the server's frames for `seconds`; the
        body bytes sent so far."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.closed:
            self._send_some()
            readable, _, _ = select.select([self.sock], [], [], 0.02)
            if not readable:
                continue
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            for event in self.conn.receive_data(data):
                self._on(event)
            self._flush()
        return self.sent

    def _on(self, event: object) -> None:
        if isinstance(event, (h2.events.StreamReset, h2.events.StreamEnded)):
            self.reset += 1
            self.pending.pop(event.stream_id, None)
            if self.reopen:
                self._open()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.closed = True

    def _send_some(self) -> None:
        for stream in list(self.pending):
            while self.pending.get(stream):
                rest = self.pending[stream]
                chunk = min(self.conn.local_flow_control_window(stream),
                            self.conn.max_outbound_frame_size, len(rest))
                if chunk <= 0:
                    break
                try:
                    self.conn.send_data(stream, bytes(rest[:chunk]))
                except Exception:  # noqa: BLE001 - the stream was closed by the server
                    self.pending.pop(stream, None)
                    break
                self.sent += chunk
                self.pending[stream] = rest[chunk:]
        try:
            self._flush()
        except OSError:
            self.closed = True

    def close(self) -> None:
        self.sock.close()


async def flood(conns: list[Unfinished], seconds: float) -> int:
    """Pump every connection in turn for `seconds` (off the event loop); how many of their
    streams the server ended."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for conn in conns:
            await asyncio.to_thread(conn.pump, 0.05)
    return sum(c.reset for c in conns)


def idle_connections(address: str, count: int) -> list[socket.socket]:
    """`count` TCP connections that send nothing (each holds a server file descriptor)."""
    host, port = address.rsplit(":", 1)
    held: list[socket.socket] = []
    for _ in range(count):
        try:
            held.append(socket.create_connection((host, int(port)), timeout=5))
        except OSError:
            break
    return held


def first_settings(address: str, timeout: float = 5.0) -> Optional[dict[int, int]]:
    """The server's SETTINGS frame values (None if it sends none in time)."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in conn.receive_data(sock.recv(1 << 16)):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    return {int(k): v.new_value for k, v in event.changed_settings.items()}
    return None
