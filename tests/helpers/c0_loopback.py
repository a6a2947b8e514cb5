"""Run the Flyte SDK's connector server `c0` bound to 127.0.0.1 only.

c0 has no host option: it binds gRPC on [::] and its metrics on 0.0.0.0. This wrapper
starts it through its public entry point (`flyte._bin.connect.main`, what the `c0`
command runs) with both binds narrowed to loopback. Usage: python c0_loopback.py ARGS...
"""

from __future__ import annotations

import sys
from typing import Any

import grpc.aio
import prometheus_client

_server = grpc.aio.server
_start_http_server = prometheus_client.start_http_server


def _loopback_server(*args: Any, **kwargs: Any) -> Any:
    server = _server(*args, **kwargs)
    add = server.add_insecure_port
    server.add_insecure_port = lambda address: add(  # type: ignore[method-assign]
        address.replace("[::]:", "127.0.0.1:").replace("0.0.0.0:", "127.0.0.1:"))
    return server


def _loopback_metrics(port: int, addr: str = "127.0.0.1", *args: Any, **kwargs: Any) -> Any:
    return _start_http_server(port, "127.0.0.1", *args, **kwargs)


grpc.aio.server = _loopback_server
prometheus_client.start_http_server = _loopback_metrics

if __name__ == "__main__":
    from flyte._bin.connect import main

    sys.argv[0] = "c0"
    sys.exit(main())
