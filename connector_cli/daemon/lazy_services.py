"""A service built by its first call (health, reflection): its imports cost later, not at
start-up, when nobody has called it yet."""

from __future__ import annotations

from typing import Any, Callable, Optional

import grpc


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
