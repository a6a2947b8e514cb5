"""Raw gRPC calls: arbitrary request bytes to a daemon method, answered by a status code."""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio

SERVICE = "/flyteidl2.connector.AsyncConnectorService/"


async def raw_call(address: str, method: str, body: bytes, timeout: float = 10) -> Any:
    """Send `body` as the request bytes of `method`; the status code (OK or the error)."""
    async with grpc.aio.insecure_channel(address) as channel:
        if method == "GetTaskLogs":
            call = channel.unary_stream(SERVICE + method)(body, timeout=timeout)
            try:
                async for _ in call:
                    pass
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details()
            return grpc.StatusCode.OK, ""
        try:
            await channel.unary_unary(SERVICE + method)(body, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details()
        return grpc.StatusCode.OK, ""
