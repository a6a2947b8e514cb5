"""gRPC health whose `Watch` streams end at shutdown instead of holding the drain open.

grpc's `HealthServicer.Watch` waits for status changes forever, so `server.stop(grace)`
waited the whole grace period for any open watcher. Here a watcher is sent NOT_SERVING
when the daemon starts draining, and then its stream ends.
"""

from __future__ import annotations

from typing import Any

from grpc_health.v1 import health, health_pb2

_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class DrainingHealth(health.aio.HealthServicer):
    """The aio health servicer with Watch streams that close on graceful shutdown."""

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        """Stream the service's status on every change; end after NOT_SERVING at shutdown."""
        service = request.service
        condition = self._server_watchers[service]
        self._watcher_count_by_service[service] += 1
        last = None
        try:
            async with condition:
                while True:
                    status = self._server_status.get(service, _UNKNOWN)
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
