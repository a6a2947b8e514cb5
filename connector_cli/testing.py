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
import shutil
from typing import TYPE_CHECKING, Any, AsyncIterator, Collection, Mapping, Optional

from connector_cli.run.task_files import TypeSpec, make_inputs, make_template
from connector_cli.run.types import PollUpdate, RunObserver, RunResult

__all__ = ["RunningDaemon", "TaskRunResult", "TypeSpec", "make_inputs", "make_template",
           "registry_with", "run_task", "serve_in_background"]

if TYPE_CHECKING:
    from flyteidl2.core.literals_pb2 import Literal
    from flyteidl2.core.tasks_pb2 import TaskTemplate
    from flyteidl2.task.common_pb2 import Inputs

    from connector_cli.client import ClientTLS, ConnectorClient
    from connector_cli.daemon.server import ConnectorServer
    from connector_cli.discovery import DiscoveryReport
    from connector_cli.run.types import RunRequest, RunTarget
    from connector_cli.sdk.connector import AsyncConnector
    from connector_cli.sdk.registry import ConnectorRegistry


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
        """The Prometheus endpoint URL when metrics are on (pass `metrics_port=0`).

        The daemon answers /metrics on the test's own event loop: scrape it from a thread
        (`await asyncio.to_thread(...)`) or with an async HTTP client, never with a blocking
        call inside the test's coroutine."""
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
    from connector_cli.daemon.server import ConnectorServer
    from connector_cli.sdk.registry import ConnectorRegistry
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
    """Load `modules` and the named installed `plugins`; any failure raises."""
    from connector_cli.config import DiscoveryConfig
    from connector_cli.discovery import load_plugins

    config = DiscoveryConfig(modules=tuple(modules), plugins=tuple(plugins))
    return load_plugins(registry, config, refuse="any")


@dataclasses.dataclass
class TaskRunResult(RunResult):
    """A `RunResult` plus every phase `get` reported, in order (repeats included)."""

    phases: list[str] = dataclasses.field(default_factory=list)


class _PhaseRecorder(RunObserver):
    """Keeps every phase a `get` reported."""

    def __init__(self) -> None:
        self.phases: list[str] = []

    def polled(self, update: PollUpdate) -> None:
        self.phases.append(update.phase)


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


async def run_task(
    target: AsyncConnector | ConnectorRegistry | RunningDaemon,
    template: TaskTemplate | str | os.PathLike[str] | Any,
    inputs: Mapping[str, Any] | Inputs | str | os.PathLike[str] | None = None,
    *,
    secrets: Optional[Mapping[str, str]] = None,
    output_prefix: Optional[str | os.PathLike[str]] = None,
    timeout: Optional[float] = 30.0,
    poll_interval: float = 0.05,
    logs: bool = False,
    metrics: bool = False,
    raise_errors: bool = True,
    get_failures: int = 5,
) -> TaskRunResult:
    """Run one task through create -> get ... -> delete, as `flyte-connector test` does.

    `target` is a connector, a registry, or a `RunningDaemon` (then the calls go over
    gRPC). `template` and `inputs` may be files (any form `flyte-connector test` reads);
    `template` may also be a Flyte SDK or flytekit task object (serialized as the backend
    gets it).
    `secrets` resolve the template's `custom.secrets` like the Flyte backend does. On `timeout`
    the job is deleted and the status is "timed_out". With `raise_errors`, an exception
    raised by the connector's create/get is re-raised after the cleanup, and inputs that do
    not fit the template (or a missing secret) raise their `UsageError`; without it they
    give the status "invalid_input", as `flyte-connector test` exits 2 for them.
    `get_failures` failed `get` calls are tolerated before the run ends with the error,
    as the backend tolerates 5. Without `output_prefix` the job gets a temporary
    directory, removed afterwards: pass one to keep what the job writes there.
    """
    from connector_cli.errors import UsageError
    from connector_cli.run.runner import Run
    from connector_cli.run.types import RunOptions

    run_target = _target_for(target)
    try:
        request = _run_request(template, inputs, secrets, output_prefix)
    except UsageError as exc:
        await run_target.close()
        if raise_errors:
            raise
        return TaskRunResult(status="invalid_input", error=str(exc), exception=exc)
    options = RunOptions(poll_interval=poll_interval, max_poll_interval=max(poll_interval, 1.0),
                         timeout=timeout, logs="end" if logs else "none", metrics=metrics,
                         delete_timeout=10.0, epilogue_timeout=10.0, get_failures=get_failures)
    recorder = _PhaseRecorder()
    try:
        ended = await Run(run_target, request, options, recorder).execute()
    finally:
        await run_target.close()
        if output_prefix is None:
            shutil.rmtree(request.output_prefix, ignore_errors=True)
    fields = {f.name: getattr(ended, f.name) for f in dataclasses.fields(RunResult)}
    result = TaskRunResult(**fields, phases=recorder.phases)
    if raise_errors and result.exception is not None:
        raise result.exception
    return result


def _run_request(
    template: TaskTemplate | str | os.PathLike[str] | Any,
    inputs: Mapping[str, Any] | Inputs | str | os.PathLike[str] | None,
    secrets: Optional[Mapping[str, str]],
    output_prefix: Optional[str | os.PathLike[str]],
) -> RunRequest:
    """The request `flyte-connector test` would send, from files or Python values."""
    from flyteidl2.core.tasks_pb2 import TaskTemplate

    from connector_cli.run.request import build_request
    from connector_cli.run.task_files import load_task, read_inputs
    from connector_cli.run.task_objects import template_of

    defaults: dict[str, Literal] = {}
    if isinstance(template, (str, os.PathLike)):
        loaded = load_task(template)
        template, defaults = loaded.template, loaded.defaults
    elif not isinstance(template, TaskTemplate):
        template = template_of(template)  # a Flyte SDK or flytekit task object
    if isinstance(inputs, (str, os.PathLike)):
        inputs = read_inputs(inputs)
    prefix = os.fspath(output_prefix) if output_prefix is not None else None
    return build_request(template, inputs, defaults=defaults, secrets=secrets,
                         output_prefix=prefix)


def _target_for(target: object) -> RunTarget:
    from connector_cli.run.targets import DaemonTarget, InProcessTarget
    from connector_cli.sdk.connector import AsyncConnector
    from connector_cli.sdk.registry import ConnectorRegistry

    if isinstance(target, RunningDaemon):
        return DaemonTarget(target.address, client=target.client)
    if isinstance(target, AsyncConnector):
        return InProcessTarget(registry_with(target))
    if isinstance(target, ConnectorRegistry):
        return InProcessTarget(target)
    raise TypeError(f"run_task runs a connector, a ConnectorRegistry or a RunningDaemon, "
                    f"not {type(target).__name__}")
