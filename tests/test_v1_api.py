"""Flyte 1's agent API (`flyteidl.service.*`) on the daemon's port, beside Flyte 2's.

Real daemons on 127.0.0.1:0, called with flyteidl's and flyteidl2's own generated stubs;
`make test` installs the `flyte1` extra (the `flyteidl` package).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

pytest.importorskip("flyteidl.service.agent_pb2", reason="needs the flyte1 extra")

import grpc
from flyteidl.admin import agent_pb2 as v1
from flyteidl.core import literals_pb2
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.core.execution_pb2 import TaskExecution
from grpc_health.v1 import health_pb2, health_pb2_grpc

from connector_cli import v1_messages
from connector_cli.errors import StartupError
from connector_cli.testing import registry_with, serve_in_background
from tests.fixtures.connectors import daemon_connectors as dc
from tests.helpers.flyte1_support import (
    V1Stubs,
    primitives,
    v1_inputs,
    v1_template,
    wire_differences,
)
from tests.helpers.flyte_support import Stubs

FLYTE_STYLE = "tests.fixtures.connectors.flyte_style"

# Every field one generation has and the other does not, on the messages the daemon
# converts by their wire bytes (v1 on the left, v2 on the right). Each is handled by name
# in connector_cli/v1_messages.py or dropped; anything else is read field for field.
EXPECTED_DIFFERENCES = {
    ("CreateTaskRequest", "CreateTaskRequest"): [
        "CreateTaskRequest.connection only in v2",
        "CreateTaskRequest.inputs.context only in v2",
        "CreateTaskRequest.inputs.literals.value.artifact_id only in v2",
        "CreateTaskRequest.task_execution_metadata.overrides only in v1",
        "CreateTaskRequest.template.container.data_config.file_input_layout only in v2",
        "CreateTaskRequest.template.extended_resources.gpu_accelerator.accelerator_model only in v2",
        "CreateTaskRequest.template.extended_resources.gpu_accelerator.device_class only in v2",
        "CreateTaskRequest.template.interface.inputs.variables.value.artifact_partial_id.time_partition.granularity = 5 only in v2",
        "CreateTaskRequest.template.interface.inputs.variables.value.artifact_partial_id.time_partition.key only in v2",
        "CreateTaskRequest.template.metadata.cache_max_age only in v2",
        "CreateTaskRequest.template.metadata.code_bundle_uri only in v2",
        "CreateTaskRequest.template.metadata.debuggable only in v2",
        "CreateTaskRequest.template.metadata.image_build_run only in v2",
        "CreateTaskRequest.template.metadata.is_entrypoint only in v2",
        "CreateTaskRequest.template.metadata.log_links only in v2",
        "CreateTaskRequest.template.metadata.produces_artifacts only in v2",
        "CreateTaskRequest.template.metadata.retries.backoff only in v2",
        "CreateTaskRequest.template.metadata.timeouts only in v2",
        "CreateTaskRequest.template.reuse_policy only in v2",
        "CreateTaskRequest.template.worker_kind only in v2",
    ],
    ("GetTaskResponse", "GetTaskResponse"): [
        "GetTaskResponse.resource.agent_error only in v1",
        "GetTaskResponse.resource.log_links.icon_uri only in v2",
        "GetTaskResponse.resource.log_links.link_type only in v2",
        "GetTaskResponse.resource.log_links.ready only in v2",
        "GetTaskResponse.resource.outputs.literals.value.artifact_id only in v2",
        "GetTaskResponse.resource.outputs.produced_artifacts only in v2",
        "GetTaskResponse.resource.state only in v1",
    ],
    ("CreateTaskResponse", "CreateTaskResponse"): [],
    ("GetTaskMetricsResponse", "GetTaskMetricsResponse"): [],
    ("GetTaskMetricsRequest", "GetTaskMetricsRequest"): [
        "GetTaskMetricsRequest.task_type only in v1"],
    ("GetTaskLogsRequest", "GetTaskLogsRequest"): ["GetTaskLogsRequest.task_type only in v1"],
    ("GetTaskLogsResponse", "GetTaskLogsResponse"): [
        "GetTaskLogsResponse.body.structured_lines.short_pod_name only in v2"],
}


def ours() -> object:
    """A registry with our own SDK's test connectors (the module may have been imported
    by another test already, so they are registered here rather than by its import)."""
    return registry_with(dc.EchoConnector(), dc.SlowConnector())


@pytest.mark.parametrize("names", sorted(EXPECTED_DIFFERENCES))
def test_v1_and_v2_messages_differ_on_the_wire_only_where_the_conversion_says(
        names: tuple[str, str]) -> None:
    old = v1.DESCRIPTOR.message_types_by_name[names[0]]
    new = pb.DESCRIPTOR.message_types_by_name[names[1]]
    assert wire_differences(old, new) == EXPECTED_DIFFERENCES[names]


def test_a_v1_literal_map_is_a_v2_inputs_byte_for_byte() -> None:
    """map<string, Literal> entries (key = 1, value = 2) are NamedLiteral (name = 1,
    value = 2): the same bytes, read by either generation."""
    inputs = v1_inputs(n=3, label="abc", ratio=0.5, flag=True)
    v2 = v1_messages.recast(inputs, __import__("flyteidl2.task.common_pb2",
                                               fromlist=["Inputs"]).Inputs)
    assert {n.name for n in v2.literals} == {"n", "label", "ratio", "flag"}
    back = v1_messages.recast(v2, literals_pb2.LiteralMap)
    assert back == inputs


def test_a_resource_gets_the_deprecated_state_of_its_phase() -> None:
    expected = {TaskExecution.QUEUED: v1.PENDING, TaskExecution.RUNNING: v1.RUNNING,
                TaskExecution.SUCCEEDED: v1.SUCCEEDED, TaskExecution.FAILED: v1.PERMANENT_FAILURE,
                TaskExecution.RETRYABLE_FAILED: v1.RETRYABLE_FAILURE,
                TaskExecution.ABORTED: v1.PERMANENT_FAILURE}
    for phase, state in expected.items():
        resource = v1_messages.resource(pb.Resource(phase=phase, message="m"))
        assert (resource.phase, resource.state, resource.message) == (phase, state, "m")


def test_a_v1_request_without_a_category_uses_the_deprecated_task_type() -> None:
    request = v1.GetTaskRequest(task_type="echo", resource_meta=b"x")
    assert v1_messages.get_request(request).task_category == pb.TaskCategory(name="echo")


async def test_both_generations_list_every_connector_with_its_categories() -> None:
    async with serve_in_background(ours(), modules=[FLYTE_STYLE], plugins=["shell"]) as daemon:
        async with V1Stubs(daemon.address) as old, Stubs(daemon.address) as new:
            agents = await old.agents()
            connectors = await new.list()
            one = await old.meta.GetAgent(v1.GetAgentRequest(name="Counter Connector"))
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await old.meta.GetAgent(v1.GetAgentRequest(name="Countr Connector"))
    assert {name: cats for name, (cats, _) in agents.items()} == connectors
    assert ("shell", 0) in connectors["Shell"] and "Counter Connector" in agents
    assert not any(sync for _, sync in agents.values())
    assert one.agent.supported_task_types == ["flyte_counter"]
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert "did you mean 'Counter Connector'" in (missing.value.details() or "")


async def test_a_shell_task_runs_create_get_delete_through_v1_and_v2(tmp_path) -> None:
    template = v1_template("shell", custom={"script": 'echo "hello $FLYTE_INPUT_NAME"'},
                           inputs={"name": "str"}, outputs={"exit_code": "int"})
    async with serve_in_background(plugins=["shell"]) as daemon:
        async with V1Stubs(daemon.address) as old, Stubs(daemon.address) as new:
            meta = await old.create(template, v1_inputs(name="flyte1"))
            resource = await _poll_v1(old, "shell", meta)
            also = await new.get("shell", meta)  # the same handle, through v2
            await old.delete("shell", meta)
            v2_template = pb.CreateTaskRequest.FromString(
                v1.CreateTaskRequest(template=template).SerializeToString()).template
            meta2 = await new.create(v2_template, v1_messages.create_request(
                v1.CreateTaskRequest(inputs=v1_inputs(name="flyte2"))).inputs)
            resource2 = await _poll_v1(old, "shell", meta2)
            await new.delete("shell", meta2)
    assert (resource.phase, resource.state) == (TaskExecution.SUCCEEDED, v1.SUCCEEDED)
    assert primitives(resource.outputs) == {"exit_code": 0}
    assert also.phase == TaskExecution.SUCCEEDED
    assert [n.name for n in also.outputs.literals] == ["exit_code"]
    assert resource2.phase == TaskExecution.SUCCEEDED


async def test_a_flyte_sdk_connector_runs_create_get_delete_through_v1() -> None:
    template = v1_template("flyte_inputs", inputs={"n": "int", "label": "str"},
                           outputs={"seen": "int"})
    async with serve_in_background(modules=[FLYTE_STYLE]) as daemon:
        async with V1Stubs(daemon.address) as old:
            meta = await old.create(template, v1_inputs(n=3, label="abc"))
            resource = await old.get("flyte_inputs", meta)
            await old.delete("flyte_inputs", meta)
    assert b"builtins.int:3" in meta and b"builtins.str:abc" in meta
    assert resource.phase == TaskExecution.SUCCEEDED and resource.state == v1.SUCCEEDED
    assert primitives(resource.outputs) == {"seen": 2}


async def test_v1_status_codes_logs_metrics_and_health() -> None:
    async with serve_in_background(ours(), modules=[FLYTE_STYLE]) as daemon:
        async with V1Stubs(daemon.address) as old:
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await old.get("no_such_type", b"x")
            with pytest.raises(grpc.aio.AioRpcError) as garbage:
                await old.get("flyte_frame", b"\xff not json")
            frame = v1_template("flyte_frame", inputs={"rows": "int"})
            meta = await old.create(frame, v1_inputs(rows=2))
            pages = [p async for p in old.tasks.GetTaskLogs(v1.GetTaskLogsRequest(
                task_category=v1.TaskCategory(name="flyte_frame"), resource_meta=meta))]
            with pytest.raises(grpc.aio.AioRpcError) as no_metrics:
                await old.tasks.GetTaskMetrics(v1.GetTaskMetricsRequest(
                    task_category=v1.TaskCategory(name="flyte_frame"), resource_meta=meta))
            health = health_pb2_grpc.HealthStub(old.channel)
            statuses = [(await health.Check(health_pb2.HealthCheckRequest(service=name))).status
                        for name in ("flyteidl.service.AsyncAgentService",
                                     "flyteidl.service.SyncAgentService",
                                     "flyteidl.service.AgentMetadataService")]
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert pages[0].body.structured_lines[0].message == "2 rows"
    assert no_metrics.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert statuses == [health_pb2.HealthCheckResponse.SERVING] * 3


async def test_api_option_turns_either_generation_off() -> None:
    async with serve_in_background(ours(), api=("v2",)) as daemon:
        async with V1Stubs(daemon.address) as old, Stubs(daemon.address) as new:
            assert "Echo" in str(await new.list())
            with pytest.raises(grpc.aio.AioRpcError) as off:
                await old.agents()
    assert off.value.code() == grpc.StatusCode.UNIMPLEMENTED
    async with serve_in_background(ours(), api=("v1",)) as daemon:
        async with V1Stubs(daemon.address) as old, Stubs(daemon.address) as new:
            assert await old.agents()
            with pytest.raises(grpc.aio.AioRpcError) as off:
                await new.list()
    assert off.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_execute_task_sync_refuses_an_async_connector() -> None:
    template = v1_template("echo")
    async with serve_in_background(ours()) as daemon:
        async with V1Stubs(daemon.address) as old:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await old.execute_sync(template)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "call CreateTask instead" in (refused.value.details() or "")


def test_asking_for_v1_without_flyteidl_names_the_fix() -> None:
    from tests.conftest import run_python

    code = (
        "import sys\n"
        "sys.modules['flyteidl'] = None\n"  # as if the package were not installed
        "from connector_cli.daemon.servicers_v1 import served_apis\n"
        "print(served_apis(None))\n"
        "try:\n"
        "    served_apis(('v1', 'v2'))\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    result = run_python(code)
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "('v2',)", result.stdout + result.stderr
    assert lines[1].startswith(StartupError.__name__) and "flyte-connector[flyte1]" in lines[1]


async def _poll_v1(stubs: V1Stubs, task_type: str, meta: bytes, timeout: float = 20) -> object:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        resource = await stubs.get(task_type, meta)
        if resource.phase in (TaskExecution.SUCCEEDED, TaskExecution.FAILED,
                              TaskExecution.RETRYABLE_FAILED, TaskExecution.ABORTED):
            return resource
        assert loop.time() < deadline, resource
        await asyncio.sleep(0.1)


def test_the_flyte1_backend_configuration_uses_the_plugins_keys() -> None:
    """deploy/flyte/connector-service-flyte1.yaml (shown in docs/migrating-from-flytekit.md)
    uses only keys of the propeller's connector-service config (config.go's json tags)."""
    import yaml

    from tests.conftest import REPO

    config = yaml.safe_load((REPO / "deploy" / "flyte" / "connector-service-flyte1.yaml")
                            .read_text())
    plugin = config["plugins"]["connector-service"]
    assert set(plugin) <= {"webApi", "resourceConstraints", "defaultConnector", "connectors",
                           "connectorForTaskTypes", "supportedTaskTypes", "pollInterval"}
    deployments = [plugin["defaultConnector"], *plugin["connectors"].values()]
    for deployment in deployments:
        assert set(deployment) <= {"endpoint", "insecure", "defaultServiceConfig", "timeouts",
                                   "defaultTimeout"}
        assert deployment["endpoint"].startswith(("k8s://", "dns:///"))
    assert set(plugin["connectorForTaskTypes"].values()) <= set(plugin["connectors"])
    assert "connector-service" in config["tasks"]["task-plugins"]["enabled-plugins"]


async def test_v1_calls_are_counted_drained_and_signed() -> None:
    """Metrics label v1 calls with their task type and operation; a drain lets an
    in-flight v1 GetTask finish; a tampered signed meta is refused before the connector."""
    import urllib.request

    slow = v1_template("slow", inputs={"seconds": "float"})
    shell = v1_template("shell", custom={"script": "true"})
    async with serve_in_background(ours(), plugins=["shell"], metrics_port=0,
                                   grace_period=5.0) as daemon:
        async with V1Stubs(daemon.address) as old:
            await old.agents()
            meta = await old.create(slow, v1_inputs(seconds=0.5))
            shell_meta = await old.create(shell)
            with pytest.raises(grpc.aio.AioRpcError) as tampered:
                await old.get("shell", shell_meta[:-1] + bytes([shell_meta[-1] ^ 1]))
            await old.delete("shell", shell_meta)
            text = await asyncio.to_thread(
                lambda: urllib.request.urlopen(daemon.metrics_url, timeout=10).read().decode())
            pending = asyncio.ensure_future(old.get("slow", meta))
            await asyncio.sleep(0.1)
            await daemon.server.stop()
            drained = await pending
    assert tampered.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert 'operation="list_agents"' in text
    assert re.search(r'requests_success_total\{[^}]*task_type="slow"[^}]*operation="create"', text) or \
        re.search(r'requests_success_total\{[^}]*operation="create"[^}]*task_type="slow"', text), text
    assert (drained.phase, drained.message) == (TaskExecution.SUCCEEDED, "slept")


def test_reflection_describes_the_v1_services_before_any_v1_call() -> None:
    """A fresh daemon has not imported flyteidl (its handlers are built by their first
    call); reflection imports the descriptors itself when asked."""
    from tests.conftest import run_python

    code = (
        "import asyncio, sys\n"
        "import grpc\n"
        "from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc\n"
        "from connector_cli.testing import serve_in_background\n"
        "async def main():\n"
        "    async with serve_in_background() as daemon:\n"
        "        before = 'flyteidl.service.agent_pb2' in sys.modules\n"
        "        async with grpc.aio.insecure_channel(daemon.address) as channel:\n"
        "            stub = reflection_pb2_grpc.ServerReflectionStub(channel)\n"
        "            asks = [reflection_pb2.ServerReflectionRequest(list_services=''),\n"
        "                    reflection_pb2.ServerReflectionRequest(\n"
        "                        file_containing_symbol='flyteidl.service.AsyncAgentService')]\n"
        "            replies = [r async for r in stub.ServerReflectionInfo(iter(asks))]\n"
        "    names = sorted(s.name for s in replies[0].list_services_response.service)\n"
        "    described = bool(replies[1].file_descriptor_response.file_descriptor_proto)\n"
        "    print(before, described, ' '.join(names))\n"
        "asyncio.run(main())\n"
    )
    result = run_python(code)
    before, described, *names = result.stdout.split()
    assert (before, described) == ("False", "True"), result.stdout + result.stderr
    assert {"flyteidl.service.AsyncAgentService", "flyteidl.service.SyncAgentService",
            "flyteidl.service.AgentMetadataService",
            "flyteidl2.connector.AsyncConnectorService"} <= set(names)


def test_serve_processes_passes_the_api_choice_to_its_workers() -> None:
    from connector_cli.cli.serve_processes import worker_argv
    from connector_cli.config import DiscoveryConfig, ServerConfig

    argv = worker_argv(ServerConfig(api=("v1",)), DiscoveryConfig(), 8000, "/tmp/state")
    assert argv[argv.index("--api") + 1] == "v1"
    assert "--api" not in worker_argv(ServerConfig(), DiscoveryConfig(), 8000, "/tmp/state")


async def test_garbage_v1_bodies_are_invalid_argument_unary_and_streamed() -> None:
    garbage = b"\x0a\xff\xff\xff\xff\x0f"  # a length prefix far past the end
    async with serve_in_background(ours()) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as unary:
                await channel.unary_unary("/flyteidl.service.AsyncAgentService/GetTask")(
                    garbage, timeout=10)

            async def parts() -> Any:
                yield garbage

            call = channel.stream_stream("/flyteidl.service.SyncAgentService/ExecuteTaskSync")
            with pytest.raises(grpc.aio.AioRpcError) as streamed:
                async for _ in call(parts(), timeout=10):
                    pass
            empty = channel.stream_stream("/flyteidl.service.SyncAgentService/ExecuteTaskSync")

            async def nothing() -> Any:
                return
                yield b""

            with pytest.raises(grpc.aio.AioRpcError) as no_header:
                async for _ in empty(nothing(), timeout=10):
                    pass
    assert unary.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid GetTaskRequest" in (unary.value.details() or "")
    assert streamed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid ExecuteTaskSyncRequest" in (streamed.value.details() or "")
    assert no_header.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expects a header" in (no_header.value.details() or "")


async def test_v1_calls_get_their_secrets_from_the_connections_file(tmp_path) -> None:
    """Flyte 1 requests carry no `connection`: with `--connections`, the daemon fills it in
    for them as for Flyte 2 requests without one (the Flyte SDK counter needs `api_key`)."""
    secret = "s3cr3t-counter-key"
    (tmp_path / "key").write_text(secret + "\n")
    (tmp_path / "connections.yaml").write_text(
        "connections:\n  - task_type: flyte_counter\n"
        f"    secrets: {{api_key: {{file: {tmp_path / 'key'}}}}}\n")
    template = v1_template("flyte_counter", inputs={"n": "int", "label": "str"},
                           outputs={"total": "int", "label": "str"})
    async with serve_in_background(modules=[FLYTE_STYLE],
                                   connections=str(tmp_path / "connections.yaml")) as daemon:
        async with V1Stubs(daemon.address) as old:
            # the counter's create refuses without the right api_key (PermissionError)
            meta = await old.create(template, v1_inputs(n=2, label="v1"))
    # (no GetTask: the counter's first poll is UNDEFINED, which its shared wrapper logs
    # once per process, and tests/test_flyte_sdk.py counts that line)
    assert b"job-2-v1-" in meta
