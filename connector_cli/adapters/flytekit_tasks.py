"""The user-facing half of a connector for Flyte 1: the flytekit task class a workflow calls.

`ConnectorTask` is the base of the flytekit task classes `flyte-connector init` writes
(`task_flytekit.py`): a flytekit `PythonTask` with flytekit's `AsyncConnectorExecutorMixin`,
whose type is its connector's task type and whose `custom` carries the task's settings
plus the `secrets` (keyword -> secret name) and `configs` our connectors read. Run locally
(`pyflyte run`, or calling the workflow), the mixin looks the task type up in flytekit's
connector registry: `execute` first puts a bridge there that runs *our* connector through
the daemon's own `Dispatcher` on the messages the daemon's Flyte 1 service would pass it
(the v1 request converted as served, the meta encoded and decoded, configs and secrets as
the connection), so a local run tests what serving does. `task_template(task)` is the
TaskTemplate `pyflyte register` serializes, the one propeller sends the daemon (and what
`flyte-connector test module:task` sends, read as the daemon's Flyte 1 service reads it).

Behind the `flytekit` extra: with `connector_cli.adapters.flytekit`, the only modules
that import `flytekit`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Optional

import flytekit
from flyteidl.admin import agent_pb2 as v1
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.core.security_pb2 import Connection
from flytekit.configuration import ImageConfig, SerializationSettings
from flytekit.core.base_task import PythonTask
from flytekit.core.interface import Interface
from flytekit.extend.backend.base_connector import AsyncConnectorBase, AsyncConnectorExecutorMixin
from flytekit.extend.backend.base_connector import ConnectorRegistry as KitRegistry
from flytekit.extend.backend.base_connector import Resource as KitResource
from flytekit.extend.backend.base_connector import ResourceMeta as KitResourceMeta
from flytekit.models.literals import LiteralMap
from flytekit.tools.translator import get_serializable

from connector_cli.dispatch import Dispatcher, Scope
from connector_cli.errors import UsageError
from connector_cli.sdk.connector import task_custom, template_custom
from connector_cli.sdk.registry import ConnectorRegistry, category_message
from connector_cli.v1_messages import create_request, resource

if TYPE_CHECKING:
    from flyteidl.core import tasks_pb2

    from connector_cli.sdk.connector import AsyncConnector

__all__ = ["ConnectorTask", "is_flytekit_task", "local_bridge", "task_template"]

_LOCK = threading.Lock()
_BRIDGES: dict[tuple[str, int], Any] = {}


class ConnectorTask(AsyncConnectorExecutorMixin, PythonTask):  # type: ignore[misc]
    """A flytekit task run by a flyte-connector connector: subclass it, set `connector` to
    the connector class, and return the task's own settings from `settings()`.

    `inputs` and `outputs` map names to Python types (the interface propeller checks);
    `secrets` maps a keyword argument of the connector's methods to the name of a secret,
    `configs` gives plain keyword arguments.
    """

    connector: ClassVar[type[AsyncConnector]]

    def __init__(self, name: str, *, inputs: Optional[Mapping[str, type]] = None,
                 outputs: Optional[Mapping[str, type]] = None,
                 secrets: Optional[Mapping[str, str]] = None,
                 configs: Optional[Mapping[str, str]] = None, **kwargs: Any) -> None:
        interface = Interface(inputs=dict(inputs or {}), outputs=dict(outputs or {}))
        super().__init__(task_type=self.connector.task_type_name, name=name,
                         interface=interface,
                         task_type_version=self.connector.task_type_version, **kwargs)
        self.connector_secrets = dict(secrets or {})
        self.connector_configs = dict(configs or {})

    def settings(self) -> dict[str, Any]:
        """The task's own part of `custom` (what the connector reads from the template)."""
        return {}

    def get_custom(self, settings: SerializationSettings) -> dict[str, Any]:
        """`custom` as our connectors read it: the settings, `secrets` and `configs`."""
        return task_custom(self.settings(), self.connector_secrets, self.connector_configs)

    def execute(self, **kwargs: Any) -> Any:
        """Run locally through flytekit: our connector, bridged into its registry."""
        local_bridge(self.connector())
        return super().execute(**kwargs)


def is_flytekit_task(value: Any) -> bool:
    """True for a flytekit task object (what `flyte-connector test module:attr` accepts)."""
    return isinstance(value, PythonTask)


def task_template(task: Any, project: str = "local", domain: str = "development",
                  version: str = "local") -> tasks_pb2.TaskTemplate:
    """The (flyteidl v1) TaskTemplate flytekit serializes for `task`: what registration
    stores and propeller sends in CreateTask."""
    settings = SerializationSettings(image_config=ImageConfig.auto_default_image(),
                                     project=project, domain=domain, version=version)
    template: tasks_pb2.TaskTemplate = get_serializable(
        OrderedDict(), settings, task).template.to_flyte_idl()
    return template


def local_bridge(connector: AsyncConnector) -> Any:
    """The flytekit connector that runs `connector` for local flytekit runs, registered
    (once per task type) in flytekit's registry."""
    key = (connector.task_type_name, connector.task_type_version)
    with _LOCK:
        bridge = _BRIDGES.get(key)
        if bridge is None:
            bridge = _BRIDGES[key] = _Bridge(connector)
            KitRegistry.register(bridge, override=True)
        return bridge


@dataclasses.dataclass
class _BridgeMeta(KitResourceMeta):  # type: ignore[misc]
    """What the bridge keeps between calls: our meta's bytes, the output prefix and the
    connection (local runs only: never stored)."""

    data: bytes
    output_prefix: str
    connection: Any


class _Bridge(AsyncConnectorBase):  # type: ignore[misc]
    """Our connector as a flytekit connector, called through our `Dispatcher`."""

    def __init__(self, connector: AsyncConnector) -> None:
        registry = ConnectorRegistry()
        registry.register(connector)
        self.name = connector.name
        super().__init__(task_type_name=connector.task_type_name,
                         task_type_version=connector.task_type_version,
                         metadata_type=_BridgeMeta)
        self.category = category_message((connector.task_type_name,
                                           connector.task_type_version))
        self.dispatcher = Dispatcher(registry)

    async def create(self, task_template: Any, output_prefix: str, inputs: Any = None,
                     **kwargs: Any) -> _BridgeMeta:
        """CreateTask as the daemon's Flyte 1 service passes it on, plus the connection
        propeller does not send: `custom.configs`, and `custom.secrets` resolved by
        flytekit's secrets manager (environment, then secret files)."""
        template = task_template.to_flyte_idl()
        request = create_request(v1.CreateTaskRequest(
            template=template, output_prefix=output_prefix,
            inputs=None if inputs is None else inputs.to_flyte_idl()))
        connection = _connection(template_custom(template))
        if connection is not None:
            request.connection.CopyFrom(connection)
        response = await self.dispatcher.create(request, Scope())
        return _BridgeMeta(bytes(response.resource_meta), output_prefix, connection)

    async def get(self, resource_meta: _BridgeMeta, **kwargs: Any) -> KitResource:
        """GetTask; the outputs as the daemon's Flyte 1 service returns them."""
        request = pb.GetTaskRequest(task_category=self.category,
                                    resource_meta=resource_meta.data,
                                    output_prefix=resource_meta.output_prefix,
                                    connection=resource_meta.connection)
        out = resource((await self.dispatcher.get(request, Scope())).resource)
        outputs = LiteralMap.from_flyte_idl(out.outputs) if out.HasField("outputs") else None
        return KitResource(phase=out.phase, message=out.message,
                           log_links=list(out.log_links), outputs=outputs)

    def delete(self, resource_meta: _BridgeMeta, **kwargs: Any) -> None:
        """DeleteTask, when a local run is interrupted. A plain `def`: flytekit calls it
        from its SIGINT handler, inside its running loop, where an `async def` one fails
        (`asyncio.run` there cannot start); a loop on a thread of its own runs it."""
        request = pb.DeleteTaskRequest(task_category=self.category,
                                       resource_meta=resource_meta.data,
                                       connection=resource_meta.connection)
        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, self.dispatcher.delete(request, Scope())).result()


def _connection(custom: Mapping[str, Any]) -> Any:
    """The connection of a local run: `custom.configs` as given, each `custom.secrets`
    name's value from flytekit's secrets manager; None when the task has neither."""
    secrets, configs = custom.get("secrets") or {}, custom.get("configs") or {}
    if not isinstance(secrets, dict) or not isinstance(configs, dict):
        raise UsageError("the task's custom 'secrets' and 'configs' must be mappings")
    if not secrets and not configs:
        return None
    return Connection(secrets={str(k): _secret(str(k), str(v)) for k, v in secrets.items()},
                      configs={str(k): str(v) for k, v in configs.items()})


def _secret(keyword: str, name: str) -> str:
    manager = flytekit.current_context().secrets
    try:
        value: str = manager.get(key=name)
    except ValueError:
        raise UsageError(
            f"the task needs secret {name!r} (for {keyword!r}); set the environment "
            f"variable {manager.get_secrets_env_var(key=name)} or {name.upper()}"
        ) from None
    return value
