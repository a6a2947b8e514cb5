"""gRPC health: built by the first health call, and whose `Watch` streams end at shutdown.

grpc's `HealthServicer.Watch` waits for status changes forever, so `server.stop(grace)`
waited the whole grace period for any open watcher. Here a watcher is sent NOT_SERVING
when the daemon starts draining, and then its stream ends.

`LazyHealth` keeps the statuses the daemon sets until a health call arrives, and only then
imports grpc_health and builds the servicer: readiness does not wait for those imports.
"""

from __future__ import annotations

from typing import Any

import grpc

from connector_cli.daemon.gate import RequestGate
from connector_cli.daemon.lazy_services import BuiltOnFirstCall
from connector_cli.daemon.raw_handlers import raw_handler

SERVICE = "grpc.health.v1.Health"
SERVING, NOT_SERVING = 1, 2  # grpc.health.v1.HealthCheckResponse.ServingStatus


class LazyHealth(BuiltOnFirstCall):
    """The daemon's health service: statuses now, grpc_health's servicer at first use."""

    def __init__(self, gate: RequestGate) -> None:
        super().__init__(SERVICE, self._build_servicer)
        self.gate = gate
        self.statuses: dict[str, int] = {}
        self.draining = False
        self._servicer: Any = None

    async def set(self, service: str, status: int) -> None:
        """Set the status reported for `service` ('' is the whole server)."""
        self.statuses[service] = status
        if self._servicer is not None:
            await self._servicer.set(service, status)

    async def enter_graceful_shutdown(self) -> None:
        """Every service NOT_SERVING from now on; open Watch streams end."""
        self.draining = True
        self.statuses = dict.fromkeys(self.statuses, NOT_SERVING)
        if self._servicer is not None:
            await self._servicer.enter_graceful_shutdown()

    def _build_servicer(self) -> grpc.GenericRpcHandler:
        from grpc_health.v1 import health_pb2

        self._servicer = _draining_servicer()(self.statuses, self.draining)
        return raw_handler(health_pb2.DESCRIPTOR.services_by_name["Health"], self._servicer,
                           self.gate)


def _draining_servicer() -> type:
    """grpc_health's aio servicer with Watch streams that close on graceful shutdown."""
    from grpc_health.v1 import health, health_pb2

    unknown = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN

    class DrainingHealth(health.aio.HealthServicer):  # type: ignore[misc, name-defined]
        def __init__(self, statuses: dict[str, int], draining: bool) -> None:
            super().__init__()
            self._server_status.update(statuses)
            self._gracefully_shutting_down = draining

        async def Watch(self, request: Any, context: Any) -> None:
            """Stream the service's status on every change; end after NOT_SERVING at
            shutdown."""
            service = request.service
            condition = self._server_watchers[service]
            self._watcher_count_by_service[service] += 1
            last = None
            try:
                async with condition:
                    while True:
                        status = self._server_status.get(service, unknown)
                        if status != last:
                            await context.write(health_pb2.HealthCheckResponse(status=status))
                            last = status
                        if self._gracefully_shutting_down:
                            return
                        await condition.wait()
            finally:
                self._watcher_count_by_service[service] -= 1
                if self._watcher_count_by_service[service] == 0:
                    del self._server_watchers[service]
                    del self._watcher_count_by_service[service]

    return DrainingHealth
