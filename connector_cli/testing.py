"""Helpers for connector authors' own tests (the pytest fixtures live in `pytest_plugin`).

- `serve_in_background` runs the same grpc.aio server `flyte-connector serve` runs, on
  127.0.0.1 with an ephemeral port, inside the current event loop, and hands back a client
  that talks to it with the generated flyteidl2 stubs (exactly what the Flyte target does).
- `run_task` drives a connector through create -> get ... -> delete, in-process or
  against such a daemon, with the same runner `flyte-connector test` uses.
- `make_template`, `make_inputs` and `registry_with` build task templates, inputs and
  registries from plain Python.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import TYPE_CHECKING, Any, AsyncIterator, Collection, Mapping, Optional

from connector_cli.run.types import PollUpdate, RunObserver, RunResult

if TYPE_CHECKING:
    from flyteidl2.core.literals_pb2 import Literal
    from flyteidl2.core.tasks_pb2 import TaskTemplate
    from flyteidl2.core.types_pb2 import LiteralType
    from flyteidl2.task.common_pb2 import Inputs

    from connector_cli.client import ClientTLS, ConnectorClient
    from connector_cli.discovery import DiscoveryReport
    from connector_cli.sdk.registry import ConnectorRegistry
    from connector_cli.run.types import RunTarget, RunRequest
    from connector_cli.sdk.connector import AsyncConnector
    from connector_cli.daemon.server import ConnectorServer


@dataclasses.dataclass
class RunningDaemon:
    """A daemon started by `serve_in_background`."""

    server: ConnectorServer
    client: ConnectorClient
    registry: ConnectorRegistry
    report: Optional[DiscoveryReport]

    @property
    def port(self) -> int:
        """The bound gRPC port."""
        return self.server.port

    @property
    def address(self) -> str:
        """'127.0.0.1:PORT', ready for a client channel."""
        return self.server.address

    @property
    def metrics_url(self) -> Optional[str]:
        """The Prometheus endpoint URL when metrics are on (pass `metrics_port=0`)."""
        port = self.server.metrics_port
        return f"http://{self.server.config.host}:{port}/metrics" if port else None


@contextlib.asynccontextmanager
async def serve_in_background(
    registry: Optional[ConnectorRegistry] = None,
    *,
    modules: Collection[str] = (),
    plugins: Collection[str] = (),
    client_timeout: float = 10.0,
    client_tls: Optional[ClientTLS] = None,
    **server_options: Any,
) -> AsyncIterator[RunningDaemon]:
    """Run a daemon on 127.0.0.1:0 for the duration of the block.

    Connectors come from `registry` (a fresh one when None) plus `modules` and installed
    `plugins` (entry-point or distribution names; none by default). `server_options` are
    `ServerConfig` fields, e.g. `workers=4` or `metrics_port=0` for ephemeral metrics
    (off by default). Pass `client_tls` when the daemon serves TLS. A module or plugin
    that fails to load raises `PluginLoadError`. Resource meta is signed with a key made
    for this daemon unless `meta_key_file` is given (two daemons with the same key file
    accept each other's handles, as replicas do).
    """
    from connector_cli.client import ConnectorClient
    from connector_cli.config import ServerConfig
    from connector_cli.sdk.registry import ConnectorRegistry
    from connector_cli.daemon.server import ConnectorServer
    from connector_cli.signing import MetaSigner

    registry = registry if registry is not None else ConnectorRegistry()
    report = _load(registry, modules, plugins) if modules or plugins else None
    server_options.setdefault("host", "127.0.0.1")
    server_options.setdefault("port", 0)
    server_options.setdefault("metrics_port", None)
    server_options.setdefault("grace_period", 1.0)
    config = ServerConfig(**server_options)
    signer = None if config.meta_key_file else MetaSigner.ephemeral()
    server = ConnectorServer(registry, config, report, signer)
    await server.start()
    try:
        client = ConnectorClient(server.address, tls=client_tls, timeout=client_timeout)
        async with client:
            yield RunningDaemon(server, client, registry, report)
    finally:
        await server.stop()


def _load(
    registry: ConnectorRegistry, modules: Collection[str], plugins: Collection[str]
) -> DiscoveryReport:
    from connector_cli.discovery import discover
    from connector_cli.errors import PluginLoadError

    report = discover(registry, tuple(modules), tuple(plugins))
    if report.failed:
        raise PluginLoadError("; ".join(f"{f.origin.name}: {f.error}" for f in report.failed))
    return report


TypeSpec = Any
"""A Python type (`int`, `list[str]`, `Optional[float]`, `FlyteFile`, an Enum class), a
ready `LiteralType`, or an example value whose type is inferred (`3`, `"x"`, `[1.5]`)."""


@dataclasses.dataclass
class TaskRunResult(RunResult):
    """A `RunResult` plus every phase `get` reported, in order (repeats included)."""

    phases: list[str] = dataclasses.field(default_factory=list)


class _PhaseRecorder(RunObserver):
    def __init__(self, result: TaskRunResult) -> None:
        self.result = result

    def polled(self, update: PollUpdate) -> None:
        self.result.phases.append(update.phase)


def registry_with(
    *connectors: AsyncConnector, modules: Collection[str] = (), plugins: Collection[str] = ()
) -> ConnectorRegistry:
    """A fresh registry holding `connectors` plus what `modules` and installed `plugins`
    register (none by default); a module or plugin that fails raises `PluginLoadError`."""
    from connector_cli.sdk.registry import ConnectorRegistry

    registry = ConnectorRegistry()
    for connector in connectors:
        registry.register(connector)
    if modules or plugins:
        _load(registry, modules, plugins)
    return registry


def make_template(
    task_type: str,
    *,
    custom: Optional[Mapping[str, Any]] = None,
    inputs: Optional[Mapping[str, TypeSpec]] = None,
    outputs: Optional[Mapping[str, TypeSpec]] = None,
    version: int = 0,
    name: str = "",
) -> TaskTemplate:
    """A `TaskTemplate` for `task_type` v`version` with a typed interface.

    `inputs`/`outputs` map names to a `TypeSpec`; `custom` is the template's JSON config
    (what the connector reads from `task_template.custom`).
    """
    from flyteidl2.core.identifier_pb2 import Identifier
    from flyteidl2.core.interface_pb2 import TypedInterface
    from flyteidl2.core.tasks_pb2 import TaskTemplate

    from connector_cli.errors import UsageError

    if not task_type:
        raise UsageError("a task template needs a task type")
    template = TaskTemplate(type=task_type, task_type_version=version)
    if name:
        template.id.CopyFrom(Identifier(name=name))
    if inputs or outputs:
        template.interface.CopyFrom(TypedInterface(
            inputs=_variable_map(inputs or {}, "input"),
            outputs=_variable_map(outputs or {}, "output")))
    if custom is not None:
        if not isinstance(custom, Mapping):
            raise UsageError(f"custom must be a mapping (a JSON object), got {type(custom).__name__}")
        try:
            template.custom.update(custom)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"custom is not JSON data: {exc}") from None
    return template


def _variable_map(specs: Mapping[str, TypeSpec], role: str) -> Any:
    from flyteidl2.core.interface_pb2 import Variable, VariableEntry, VariableMap

    from connector_cli.errors import LiteralError
    from connector_cli.literals import literal_type_of

    entries = []
    for name, spec in specs.items():
        try:
            literal_type = literal_type_of(spec)
        except LiteralError as exc:
            raise LiteralError(f"{role} '{name}': {str(exc).partition(': ')[2] or exc}") from None
        entries.append(VariableEntry(key=name, value=Variable(type=literal_type)))
    return VariableMap(variables=entries)


def make_inputs(template: TaskTemplate, values: Mapping[str, Any],
                defaults: Optional[Mapping[str, Literal]] = None) -> Inputs:
    """`flyteidl2.task.Inputs` for `template` from Python or JSON values, typed by its
    interface (a `LiteralError` names a wrong, unknown or missing input)."""
    from connector_cli.literals import json_to_inputs

    interface = template.interface if template.HasField("interface") else None
    return json_to_inputs(values, interface, defaults)


async def run_task(
    target: AsyncConnector | ConnectorRegistry | RunningDaemon,
    template: TaskTemplate | str | os.PathLike[str],
    inputs: Mapping[str, Any] | Inputs | str | os.PathLike[str] | None = None,
    *,
    secrets: Optional[Mapping[str, str]] = None,
    output_prefix: Optional[str | os.PathLike[str]] = None,
    timeout: Optional[float] = 30.0,
    poll_interval: float = 0.05,
    logs: bool = False,
    metrics: bool = False,
    raise_errors: bool = True,
) -> TaskRunResult:
    """Run one task through create -> get ... -> delete, as `flyte-connector test` does.

    `target` is a connector, a registry, or a `RunningDaemon` (then the calls go over
    gRPC). `template` and `inputs` may be files (any form `flyte-connector test` reads).
    `secrets` resolve the template's `custom.secrets` like the Flyte backend does. On `timeout`
    the job is deleted and the status is "timed_out". With `raise_errors`, an exception
    raised by the connector's create/get is re-raised after the cleanup.
    """
    from connector_cli.run.runner import Run, RunOptions

    target = _target_for(target)
    request = _run_request(template, inputs, secrets, output_prefix)
    options = RunOptions(poll_interval=poll_interval, max_poll_interval=max(poll_interval, 1.0),
                         timeout=timeout, logs="end" if logs else "none", metrics=metrics,
                         delete_timeout=10.0, epilogue_timeout=10.0)
    result = TaskRunResult()
    run = Run(target, request, options, _PhaseRecorder(result))
    run.result = result
    try:
        await run.execute()
    finally:
        await target.close()
    if raise_errors and result.exception is not None:
        raise result.exception
    return result


def _run_request(template: Any, inputs: Any, secrets: Optional[Mapping[str, str]],
                 output_prefix: Any) -> RunRequest:
    import tempfile

    from flyteidl2.task.common_pb2 import Inputs

    from connector_cli.run.runner import RunRequest
    from connector_cli.sdk.secrets import connection_for
    from connector_cli.run.task_files import execution_metadata, load_task, read_inputs

    defaults: dict[str, Any] = {}
    if isinstance(template, (str, os.PathLike)):
        loaded = load_task(template)
        template, defaults = loaded.template, loaded.defaults
    if isinstance(inputs, (str, os.PathLike)):
        inputs = read_inputs(inputs)
    if not isinstance(inputs, Inputs):
        inputs = make_inputs(template, inputs or {}, defaults)
    prefix = os.fspath(output_prefix) if output_prefix is not None else tempfile.mkdtemp(
        prefix="flyte-connector-run-")
    return RunRequest(template=template, inputs=inputs if len(inputs.literals) else None,
                      output_prefix=prefix, task_execution_metadata=execution_metadata(template),
                      connection=connection_for(template, secrets or {}))


def _target_for(target: Any) -> RunTarget:
    from connector_cli.run.targets import InProcessTarget
    from connector_cli.sdk.registry import ConnectorRegistry
    from connector_cli.sdk.connector import AsyncConnector

    if isinstance(target, RunningDaemon):
        return _daemon_target(target)
    if isinstance(target, AsyncConnector):
        return InProcessTarget(registry_with(target))
    if isinstance(target, ConnectorRegistry):
        return InProcessTarget(target)
    raise TypeError(f"run_task runs a connector, a ConnectorRegistry or a RunningDaemon, "
                    f"not {type(target).__name__}")



def _daemon_target(daemon: RunningDaemon) -> RunTarget:
    """A `DaemonTarget` that uses the daemon's own client (its channel and TLS)."""
    from connector_cli.run.targets import DaemonTarget

    class _TestDaemonTarget(DaemonTarget):
        @property
        def client(self) -> ConnectorClient:
            return daemon.client

        async def close(self) -> None:
            """The client belongs to the daemon, which closes it."""

    return _TestDaemonTarget(daemon.address)
