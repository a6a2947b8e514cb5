"""Helpers for the Flyte 1 tests: v1 (`flyteidl`) stubs, v1 task templates built with
flyteidl's own classes, and a descriptor walk that lists where v1 and v2 messages differ."""

from __future__ import annotations

from typing import Any, Optional

import grpc
from flyteidl.admin import agent_pb2 as v1
from flyteidl.core import interface_pb2, literals_pb2, tasks_pb2, types_pb2
from flyteidl.service.agent_pb2_grpc import (
    AgentMetadataServiceStub,
    AsyncAgentServiceStub,
    SyncAgentServiceStub,
)
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct

SIMPLE = {"int": types_pb2.SimpleType.INTEGER, "str": types_pb2.SimpleType.STRING,
          "float": types_pb2.SimpleType.FLOAT, "bool": types_pb2.SimpleType.BOOLEAN}


def v1_template(task_type: str, custom: Optional[dict] = None,
                inputs: Optional[dict[str, str]] = None,
                outputs: Optional[dict[str, str]] = None, version: int = 0) -> Any:
    """A flyteidl.core.TaskTemplate (v1) with simple-typed inputs and outputs."""
    def variables(spec: dict[str, str]) -> Any:
        return interface_pb2.VariableMap(variables={
            name: interface_pb2.Variable(type=types_pb2.LiteralType(simple=SIMPLE[kind]))
            for name, kind in spec.items()})

    template = tasks_pb2.TaskTemplate(type=task_type, task_type_version=version)
    template.interface.CopyFrom(interface_pb2.TypedInterface(
        inputs=variables(inputs or {}), outputs=variables(outputs or {})))
    if custom is not None:
        template.custom.CopyFrom(json_format.ParseDict(custom, Struct()))
    return template


def v1_inputs(**values: Any) -> Any:
    """A flyteidl.core.LiteralMap of ints, floats, bools and strings."""
    literals = {}
    for name, value in values.items():
        if isinstance(value, bool):
            primitive = literals_pb2.Primitive(boolean=value)
        elif isinstance(value, int):
            primitive = literals_pb2.Primitive(integer=value)
        elif isinstance(value, float):
            primitive = literals_pb2.Primitive(float_value=value)
        else:
            primitive = literals_pb2.Primitive(string_value=str(value))
        literals[name] = literals_pb2.Literal(scalar=literals_pb2.Scalar(primitive=primitive))
    return literals_pb2.LiteralMap(literals=literals)


def primitives(literal_map: Any) -> dict[str, Any]:
    """A v1 LiteralMap of primitives as Python values."""
    out = {}
    for name, literal in literal_map.literals.items():
        primitive = literal.scalar.primitive
        out[name] = getattr(primitive, primitive.WhichOneof("value"))
    return out


class V1Stubs:
    """Flyte 1's three agent services on one channel."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.tasks = AsyncAgentServiceStub(self.channel)
        self.sync = SyncAgentServiceStub(self.channel)
        self.meta = AgentMetadataServiceStub(self.channel)

    async def __aenter__(self) -> V1Stubs:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.channel.close()

    async def agents(self) -> dict[str, tuple[list[tuple[str, int]], bool]]:
        response = await self.meta.ListAgents(v1.ListAgentsRequest(), timeout=10)
        return {a.name: ([(c.name, c.version) for c in a.supported_task_categories], a.is_sync)
                for a in response.agents}

    async def create(self, template: Any, inputs: Any = None,
                     output_prefix: str = "/tmp/flyte-out") -> bytes:
        request = v1.CreateTaskRequest(template=template, output_prefix=output_prefix)
        if inputs is not None:
            request.inputs.CopyFrom(inputs)
        response = await self.tasks.CreateTask(request, timeout=30)
        return bytes(response.resource_meta)

    async def get(self, task_type: str, meta: bytes, version: int = 0) -> Any:
        response = await self.tasks.GetTask(v1.GetTaskRequest(
            task_category=v1.TaskCategory(name=task_type, version=version),
            resource_meta=meta), timeout=30)
        return response.resource

    async def delete(self, task_type: str, meta: bytes) -> None:
        await self.tasks.DeleteTask(v1.DeleteTaskRequest(
            task_category=v1.TaskCategory(name=task_type), resource_meta=meta), timeout=30)

    async def execute_sync(self, template: Any, inputs: Any = None) -> Any:
        async def parts() -> Any:
            yield v1.ExecuteTaskSyncRequest(header=v1.CreateRequestHeader(
                template=template, output_prefix="/tmp/flyte-out"))
            yield v1.ExecuteTaskSyncRequest(inputs=inputs or literals_pb2.LiteralMap())

        answers = [a async for a in self.sync.ExecuteTaskSync(parts(), timeout=30)]
        assert len(answers) == 1 and answers[0].HasField("header"), answers
        return answers[0].header.resource


def wire_differences(old: Any, new: Any) -> list[str]:
    """Where two message descriptors (and every message they contain) differ on the wire:
    a field number only one side has, a different wire type or cardinality, or an enum
    number named on one side only. Empty when every byte one writes the other reads."""
    out: list[str] = []
    _walk(old, new, old.name, out, set())
    return sorted(out)


def _walk(d1: Any, d2: Any, path: str, out: list[str], seen: set) -> None:
    if (d1.full_name, d2.full_name) in seen:
        return
    seen.add((d1.full_name, d2.full_name))
    theirs = {f.number: f for f in d2.fields}
    for f in d1.fields:
        g = theirs.get(f.number)
        where = f"{path}.{f.name}"
        if g is None:
            out.append(f"{where} only in v1")
        elif f.type != g.type or f.is_repeated != g.is_repeated:
            out.append(f"{where} differs in type")
        else:
            if f.message_type is not None:
                _walk(f.message_type, g.message_type, where, out, seen)
            if f.enum_type is not None:
                a = {v.number for v in f.enum_type.values}
                b = {v.number for v in g.enum_type.values}
                out.extend(f"{where} = {n} only in v{1 if n in a else 2}" for n in sorted(a ^ b))
    numbers = {f.number for f in d1.fields}
    out.extend(f"{path}.{g.name} only in v2" for g in d2.fields if g.number not in numbers)


def ready_v1(process: Any, address: str, timeout: float = 90.0) -> Any:
    """Wait until a daemon subprocess (`flyte_support.Process`) answers ListAgents."""
    import time

    process.address = address
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.proc.poll() is not None:
            raise AssertionError(f"exited {process.proc.returncode}:\n{process.text()}")
        try:
            with grpc.insecure_channel(address) as channel:
                AgentMetadataServiceStub(channel).ListAgents(v1.ListAgentsRequest(), timeout=2)
            return process
        except grpc.RpcError:
            time.sleep(0.3)
    process.stop()
    raise AssertionError(f"not ready at {address}:\n{process.text()}")


def start_pyflyte(tmp: Any, *args: str, **env: str) -> Any:
    """flytekit's own server, `pyflyte serve connector`, on free loopback ports (and only
    there: checked from /proc)."""
    import sys

    from tests.helpers.flyte_support import Process, free_port, listening_addresses

    port = free_port()
    argv = [sys.executable, "-m", "tests.helpers.pyflyte_loopback", "--port", str(port),
            "--prometheus_port", str(free_port()), *args]
    kit = ready_v1(Process(argv, tmp / f"pyflyte-{port}.log", **env), f"127.0.0.1:{port}")
    listening = listening_addresses(kit.proc.pid)
    assert listening and all(host in ("127.0.0.1", "::1") for host, _ in listening), listening
    return kit


def start_ours_v1(tmp: Any, *args: str, **env: str) -> Any:
    """`flyte-connector serve` with pyflyte's command line (`serve connector --port ...
    --prometheus_port ... --worker ...`) on free loopback ports."""
    import sys

    from tests.helpers.flyte_support import Process, free_port

    port = free_port()
    env.setdefault("FLYTE_CONNECTOR_HOST", "127.0.0.1")
    argv = [sys.executable, "-m", "connector_cli", "serve", "connector", "--port", str(port),
            "--prometheus_port", str(free_port()), "--worker", "10", *args]
    ours = ready_v1(Process(argv, tmp / f"ours-{port}.log", **env), f"127.0.0.1:{port}")
    from tests.helpers.flyte_support import listening_addresses

    listening = listening_addresses(ours.proc.pid)
    assert listening and all(host == "127.0.0.1" for host, _ in listening), listening
    return ours
