"""A flytekit connector on our daemon against the same connector on flytekit's own server
(`pyflyte serve connector`): what a Flyte 1 user who switches servers gets. The method is
compare.py's.

Both servers come from this venv and serve one module, `flytekit_bench_connector.py` (the
reference kit's `bench` connector written for flytekit: dataclass meta, `get` ->
SUCCEEDED with two outputs that flytekit's type engine converts): pyflyte through its
command (`pyflyte serve connector --modules ...`, tests/helpers/pyflyte_loopback.py binds
it to 127.0.0.1 and changes nothing else), ours as a user starts it (`flyte-connector
serve --plugins none -m flytekit_bench_connector`, metrics on). Both are measured through
Flyte 1's agent API (`flyteidl.service.AsyncAgentService`, which ours serves on its one
port beside Flyte 2's) by loadgen_v1.py, the kit's load generator with Flyte 1's stubs.
Each round starts both, alternating the order, the server pinned to one core and the load
generator to the other: RSS once ready and idle, GetTask and CreateTask at c=64, RSS after
the load; the table gives ours / pyflyte against the issue's targets. Last, isolation: our
daemon serving the same connector with a `get` that blocks its loop for 0.5 s, 32 such
GetTasks in flight, and the latency of ListAgents and ListConnectors meanwhile (target
< 50 ms). pyflyte is not probed: one blocking `get` stalls its only loop.

Usage: python bench/bench_flytekit.py [--rounds N] [--seconds S]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import Contest, main, while_blocked
from servers import KIT_MODULE, PYFLYTE


async def _isolation(address: str) -> tuple[dict[str, list[float]], int]:
    """ListAgents and ListConnectors while Flyte 1 GetTasks block the connector's loop."""
    # here: the kit's `loadgen` is importable only once compare.main has found the kit
    import grpc
    from flyteidl.admin import agent_pb2 as v1
    from flyteidl.service.agent_pb2_grpc import AgentMetadataServiceStub, AsyncAgentServiceStub
    from flyteidl2.connector import connector_pb2 as pb
    from flyteidl2.connector.service_pb2_grpc import ConnectorMetadataServiceStub
    from loadgen import build_create_request, build_get_request
    from loadgen_v1 import create_v1, get_v1

    async with grpc.aio.insecure_channel(address) as channel:
        tasks, agents = AsyncAgentServiceStub(channel), AgentMetadataServiceStub(channel)
        connectors = ConnectorMetadataServiceStub(channel)

        async def create() -> bytes:
            request = create_v1(build_create_request("bench"))
            return bytes((await tasks.CreateTask(request, timeout=10)).resource_meta)

        return await while_blocked(
            create,
            lambda meta: tasks.GetTask(get_v1(build_get_request("bench", meta)), timeout=60),
            {"ListAgents": lambda: agents.ListAgents(v1.ListAgentsRequest(), timeout=10),
             "ListConnectors": lambda: connectors.ListConnectors(pb.ListConnectorsRequest(),
                                                                 timeout=10)})


CONTEST = Contest("flytekit connector on ours vs pyflyte serve connector", PYFLYTE,
                  _isolation, kit_file="loadgen.py", sdk="flytekit",
                  sdk_hint="the `flytekit` extra",
                  ours_options={"modules": (KIT_MODULE,), "v1": True},
                  theirs_options={"modules": (KIT_MODULE,)})


if __name__ == "__main__":
    sys.exit(main(CONTEST, __doc__, sys.argv[1:]))
