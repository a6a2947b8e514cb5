"""`pyflyte serve connector ARGS...`, flytekit's own connector server, bound to loopback.

flytekit binds its gRPC port on `[::]` and its Prometheus port on every interface; the
tests wrap both calls so the server listens on 127.0.0.1 only, and change nothing else.
Run as `python -m tests.helpers.pyflyte_loopback --port P --prometheus_port Q --modules M`.
"""

from __future__ import annotations

import sys
from typing import Any

import grpc.aio
import prometheus_client

_make_server = grpc.aio.server
_start_http_server = prometheus_client.start_http_server


def _loopback_server(*args: Any, **kwargs: Any) -> Any:
    server = _make_server(*args, **kwargs)
    add = server.add_insecure_port
    server.add_insecure_port = lambda address: add(  # type: ignore[method-assign]
        address.replace("[::]", "127.0.0.1"))
    return server


def _loopback_metrics(port: int, addr: str = "", **kwargs: Any) -> Any:
    return _start_http_server(port, addr="127.0.0.1", **kwargs)


def main(argv: list[str]) -> None:
    grpc.aio.server = _loopback_server
    prometheus_client.start_http_server = _loopback_metrics
    from flytekit.clis.sdk_in_container.serve import serve

    serve.main(["connector", *argv], prog_name="pyflyte serve")


if __name__ == "__main__":
    main(sys.argv[1:])
