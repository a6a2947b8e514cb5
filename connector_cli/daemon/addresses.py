"""Where a listening socket binds: host and port as the socket module wants them."""

from __future__ import annotations

import socket
from typing import Any


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
