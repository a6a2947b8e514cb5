"""A Flyte SDK connector on our daemon against the same connector on the Flyte SDK's own
server (`c0`): what a user who migrates from `c0` gets. The method is compare.py's.

Both servers come from this venv (the `flyte` extra) and serve the reference kit's
`flyte_bench_connector.py` (dataclass meta, `get` -> SUCCEEDED with two outputs): `c0`
through its public entry point (`flyte.connectors.ConnectorService.run`, the kit's
`c0_server.py`, bound to 127.0.0.1), ours as a user starts it (`flyte-connector serve
--plugins none -m flyte_bench_connector`, metrics on). Each round starts both, alternating
the order, the server pinned to one core and the load generator to the other: RSS once
ready and idle, GetTask and CreateTask at c=64 (requests/s, p99, server CPU per RPC, the
load generator's own CPU, flagged when it set the pace), RSS after the load. The table
gives medians, spread and ours / c0 against the issue's targets. Last, isolation: our
daemon serving the same connector with a `get` that blocks its loop for 0.5 s, 32 such
GetTasks in flight, and the latency of ListConnectors meanwhile (target < 50 ms).

Usage: python bench/bench_flyte_sdk.py [--rounds N] [--seconds S]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import Contest, main, while_blocked
from servers import C0, FLYTE_MODULE


async def _isolation(address: str) -> tuple[dict[str, list[float]], int]:
    """ListConnectors while GetTasks block the connector's loop (Flyte 2's API)."""
    # here: the kit's `loadgen` is importable only once compare.main has found the kit
    import grpc
    from flyteidl2.connector import connector_pb2 as pb
    from flyteidl2.connector.service_pb2_grpc import (
        AsyncConnectorServiceStub,
        ConnectorMetadataServiceStub,
    )
    from loadgen import build_create_request, build_get_request

    async with grpc.aio.insecure_channel(address) as channel:
        tasks, meta_stub = AsyncConnectorServiceStub(channel), ConnectorMetadataServiceStub(channel)

        async def create() -> bytes:
            response = await tasks.CreateTask(build_create_request("bench"), timeout=10)
            return bytes(response.resource_meta)

        return await while_blocked(
            create, lambda meta: tasks.GetTask(build_get_request("bench", meta), timeout=60),
            {"ListConnectors": lambda: meta_stub.ListConnectors(pb.ListConnectorsRequest(),
                                                                timeout=10)})


CONTEST = Contest("Flyte SDK connector on ours vs c0", C0, _isolation,
                  kit_file="c0_server.py", sdk="flyte.connectors",
                  sdk_hint="the `flyte` extra: make install-flyte",
                  ours_options={"modules": (FLYTE_MODULE,)})


if __name__ == "__main__":
    sys.exit(main(CONTEST, __doc__, sys.argv[1:]))
