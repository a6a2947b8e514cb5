"""Where a listening socket binds, and the one message for a port that cannot be bound.

Every port the daemon or its `--processes` supervisor binds (gRPC, /metrics) is checked
and reported here, resolved one way (`passive_address`), so "port in use" reads the same
wherever it happens.
"""

from __future__ import annotations

import errno
import socket
from typing import Any, Literal

from connector_cli.errors import StartupError

Port = Literal["grpc", "metrics"]
_PORTS: dict[str, tuple[str, str]] = {
    "grpc": ("listen on", "--port or FLYTE_CONNECTOR_PORT"),
    "metrics": ("serve metrics on",
                "--metrics-port or FLYTE_CONNECTOR_METRICS_PORT; 0 disables metrics"),
}


def passive_address(host: str, port: int) -> tuple[Any, ...]:
    """(family, type, proto, canonname, sockaddr) to bind host:port on.

    An IP address is taken as it is, with no name service lookup and no IDNA codec to
    import (both cost start-up time); a host name is resolved. Raises `socket.gaierror`
    for a name that does not resolve.
    """
    try:
        return socket.getaddrinfo(host.encode("ascii"), port, type=socket.SOCK_STREAM,
                                  flags=socket.AI_PASSIVE | socket.AI_NUMERICHOST)[0]
    except (UnicodeEncodeError, socket.gaierror):
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                  flags=socket.AI_PASSIVE)[0]


def host_port(host: str, port: int) -> str:
    """HOST:PORT with IPv6 hosts in brackets, e.g. '[::]:8000'."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def bind_error(which: Port, host: str, port: int, reason: str) -> StartupError:
    """The start-up error for a port that cannot be bound, naming the option to change."""
    what, choose = _PORTS[which]
    return StartupError(
        f"cannot {what} {host_port(host, port)}: {reason} (choose another port with {choose})"
    )


def check_free(host: str, port: int, which: Port = "grpc") -> None:
    """Raise `bind_error` naming the OS reason when host:port is in use or forbidden.

    grpc reports a failed bind only as a generic error (and logs its own line), so try it
    with a plain socket first. Other errors (say, no IPv6 here) are left for grpc, which
    may still bind another way."""
    try:
        family, kind, proto, _, address = passive_address(host, port)
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            raise bind_error(which, host, port, exc.strerror or str(exc)) from None


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) host:port with SO_REUSEPORT: fixes `--port 0` to one port that
    only the `--processes` workers can share; `bind_error` when another process holds it."""
    try:
        family, kind, proto, _, address = passive_address(host, port)
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        raise bind_error("grpc", host, port, exc.strerror or str(exc)) from None
    return sock
