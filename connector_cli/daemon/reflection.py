"""gRPC server reflection, built by the first reflection call rather than at start-up.

Reflection is for people with `grpcurl`, never for the first answer a daemon gives, so its
module (descriptors and servicer) is not imported before the port is bound: a generic
handler stands in and builds grpc_reflection's own aio servicer the first time a
reflection method is called.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import grpc

SERVICE = "grpc.reflection.v1alpha.ServerReflection"
_PREFIX = f"/{SERVICE}/"


class LazyReflection(grpc.GenericRpcHandler):
    """Answers reflection for `names` (the services it lists), built on first use."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self._handler: Optional[grpc.GenericRpcHandler] = None

    def service(self, handler_call_details: Any) -> Optional[grpc.RpcMethodHandler]:
        """The reflection method's handler; None for any other method."""
        if not handler_call_details.method.startswith(_PREFIX):
            return None
        if self._handler is None:
            self._handler = _build(self.names)
        return self._handler.service(handler_call_details)


class _Collect:
    """Stands in for a server so grpc_reflection's `add_..._to_server` hands its handler over."""

    def __init__(self) -> None:
        self.handlers: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self.handlers.extend(handlers)

    def add_registered_method_handlers(self, name: str, handlers: Any) -> None:
        """The generic handler above serves the same methods."""


def _build(names: Sequence[str]) -> grpc.GenericRpcHandler:
    from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

    collect = _Collect()
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer(names), collect
    )
    (handler,) = collect.handlers
    return handler
