"""The reference kit's load generator (`loadgen.py`) speaking Flyte 1's agent API.

Same options, same closed loop, same JSON line: this imports the kit's `loadgen` and runs
its `main()` with two things swapped. Its request builders still build the kit's Flyte 2
requests, each converted once to the Flyte 1 message (`flyteidl.admin.agent_pb2`: the
template and TaskExecutionMetadata by their wire bytes, which both generations share;
the inputs as a `flyteidl.core.LiteralMap`) and serialized once. Its stubs call
`/flyteidl.service.AsyncAgentService/*` and `AgentMetadataService/ListAgents` with those
bytes as they are, so per call the client does no more than the kit's (which serializes
its fixed request on every call): the client must never set the pace.

Usage: python bench/loadgen_v1.py --target HOST:PORT --rpc get|create|delete|list|mixed ...
(the kit's options; the kit is $BENCH_KIT or ../shared/bench, as for the other benchmarks).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flyteidl.admin import agent_pb2 as v1
from flyteidl.core import literals_pb2, tasks_pb2
from servers import find_kit

SERVICE = "/flyteidl.service.AsyncAgentService/"
LIST_AGENTS = "/flyteidl.service.AgentMetadataService/ListAgents"


def wire(message: Any, target: Any) -> Any:
    """`message` parsed as the Flyte 1 class `target` (the field numbers are shared);
    refuses a field the target does not know rather than sending it along unread."""
    out = target.FromString(message.SerializeToString())
    out.DiscardUnknownFields()
    if out.ByteSize() != message.ByteSize():
        raise ValueError(f"{target.DESCRIPTOR.full_name} does not know every field")
    return out


def create_v1(request: Any) -> v1.CreateTaskRequest:
    """The kit's Flyte 2 CreateTaskRequest as Flyte 1's."""
    inputs = literals_pb2.LiteralMap(literals={
        named.name: wire(named.value, literals_pb2.Literal) for named in request.inputs.literals})
    return v1.CreateTaskRequest(
        template=wire(request.template, tasks_pb2.TaskTemplate), inputs=inputs,
        output_prefix=request.output_prefix,
        task_execution_metadata=wire(request.task_execution_metadata, v1.TaskExecutionMetadata))


def category_v1(request: Any) -> v1.TaskCategory:
    return v1.TaskCategory(name=request.task_category.name,
                           version=request.task_category.version)


def get_v1(request: Any) -> v1.GetTaskRequest:
    """The kit's Flyte 2 GetTaskRequest as Flyte 1's."""
    return v1.GetTaskRequest(task_category=category_v1(request),
                             resource_meta=request.resource_meta,
                             output_prefix=request.output_prefix)


def delete_v1(request: Any) -> v1.DeleteTaskRequest:
    """The kit's Flyte 2 DeleteTaskRequest as Flyte 1's."""
    return v1.DeleteTaskRequest(task_category=category_v1(request),
                                resource_meta=request.resource_meta)


def _tasks_stub(channel: Any) -> SimpleNamespace:
    """AsyncAgentService's three calls, taking requests already serialized."""
    def method(name: str, answer: Any) -> Any:
        return channel.unary_unary(SERVICE + name, request_serializer=None,
                                   response_deserializer=answer.FromString)

    return SimpleNamespace(CreateTask=method("CreateTask", v1.CreateTaskResponse),
                           GetTask=method("GetTask", v1.GetTaskResponse),
                           DeleteTask=method("DeleteTask", v1.DeleteTaskResponse))


def _metadata_stub(channel: Any) -> SimpleNamespace:
    """ListAgents under the name the kit calls (ListConnectors). Both requests are empty
    messages, so the kit's ListConnectorsRequest is sent as ListAgents' empty bytes."""
    empty = v1.ListAgentsRequest().SerializeToString()
    return SimpleNamespace(ListConnectors=channel.unary_unary(
        LIST_AGENTS, request_serializer=lambda _request: empty,
        response_deserializer=v1.ListAgentsResponse.FromString))


def speak_v1(kit_loadgen: Any) -> None:
    """Swap the kit module's request builders and stubs for Flyte 1's."""
    build_create = kit_loadgen.build_create_request
    build_get = kit_loadgen.build_get_request
    build_delete = kit_loadgen.build_delete_request
    kit_loadgen.build_create_request = lambda task_type, *args: create_v1(
        build_create(task_type, *args)).SerializeToString()
    kit_loadgen.build_get_request = lambda task_type, meta: get_v1(
        build_get(task_type, meta)).SerializeToString()
    kit_loadgen.build_delete_request = lambda task_type, meta: delete_v1(
        build_delete(task_type, meta)).SerializeToString()
    kit_loadgen.s = SimpleNamespace(AsyncConnectorServiceStub=_tasks_stub,
                                    ConnectorMetadataServiceStub=_metadata_stub)


def main() -> None:
    kit = find_kit()
    if kit is None:
        sys.exit("the reference bench kit (loadgen.py) was not found: ../shared/bench or "
                 "$BENCH_KIT")
    sys.path.insert(0, str(kit))
    import loadgen  # the kit's, found only now: its place is known at run time

    speak_v1(loadgen)
    loadgen.main()


if __name__ == "__main__":
    main()
