"""gRPC server reflection, built by the first reflection call rather than at start-up.

Reflection is for people with `grpcurl`, never for the first answer a daemon gives, so its
module (descriptors and servicer) is not imported before the port is bound: a generic
handler stands in and builds grpc_reflection's own aio servicer the first time a
reflection method is called.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Sequence

import grpc

from connector_cli.daemon.bodies import BodyGate
from connector_cli.daemon.lazy_services import BuiltOnFirstCall

SERVICE = "grpc.reflection.v1alpha.ServerReflection"


def lazy_reflection(names: Sequence[str], draining: asyncio.Event, bodies: BodyGate,
                    modules: Sequence[str] = ()) -> BuiltOnFirstCall:
    """Reflection listing `names`, built by its first call, which first imports `modules`
    (descriptors of services that are themselves built by their first call); its request
    messages are read within `bodies`' slots and its streams end at `draining`."""
    return BuiltOnFirstCall(SERVICE, functools.partial(_build, tuple(names), draining,
                                                       bodies, tuple(modules)))


class _Collect:
    """Stands in for a server so grpc_reflection's `add_..._to_server` hands its handler over."""

    def __init__(self) -> None:
        self.handlers: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self.handlers.extend(handlers)

    def add_registered_method_handlers(self, name: str, handlers: Any) -> None:
        """The generic handler above serves the same methods."""


def _build(names: Sequence[str], draining: asyncio.Event, bodies: BodyGate,
           modules: Sequence[str] = ()) -> grpc.GenericRpcHandler:
    import importlib

    from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

    from connector_cli.daemon.streams import draining_streams

    for module in modules:
        importlib.import_module(module)
    collect = _Collect()
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer(names), collect
    )
    (handler,) = collect.handlers
    return draining_streams(bodies.gate_requests(handler), draining)
