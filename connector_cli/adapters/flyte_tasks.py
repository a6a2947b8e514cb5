"""The user-facing half of a connector for Flyte 2: the task class a workflow calls.

`ConnectorTask` is the base of the task classes `flyte-connector init` writes: a Flyte SDK
`TaskTemplate` with `AsyncConnectorExecutorMixin`, whose type is its connector's task
type and whose `custom` carries the task's settings plus the `secrets` (keyword -> secret
name) and `configs` the backend turns into the connection. Run locally with the Flyte
SDK (`flyte.run` with no cluster), the mixin looks the task type up in the Flyte SDK's
registry: `execute` first puts a bridge there that runs *our* connector through the
daemon's own `Dispatcher` on the messages the backend would send (inputs typed by the
interface, the meta encoded and decoded, configs and secrets as the connection), so a
local Flyte run tests what serving will do. `task_template(task)` is the TaskTemplate the
Flyte SDK serializes for the backend (what `flyte-connector test module:task` sends).

Behind the `flyte` extra: with `connector_cli.adapters.flyte_sdk` and `flyte_types`, the
only modules that import `flyte`.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Optional

from flyte._internal.runtime.task_serde import get_proto_task
from flyte._internal.runtime.types_serde import transform_native_to_typed_interface
from flyte.connectors import AsyncConnector as FlyteAsyncConnector
from flyte.connectors import AsyncConnectorExecutorMixin
from flyte.connectors import ConnectorRegistry as FlyteRegistry
from flyte.connectors import Resource as FlyteResource
from flyte.connectors import ResourceMeta as FlyteResourceMeta
from flyte.extend import TaskTemplate
from flyte.models import NativeInterface, SerializationContext
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.core.security_pb2 import Connection

from connector_cli.dispatch import Dispatcher, Scope
from connector_cli.literals import json_to_inputs, literal_to_python
from connector_cli.sdk.connector import task_custom, template_custom
from connector_cli.sdk.registry import ConnectorRegistry, category_message

if TYPE_CHECKING:
    from flyteidl2.core import tasks_pb2

    from connector_cli.sdk.connector import AsyncConnector

__all__ = ["ConnectorTask", "is_flyte_task", "local_bridge", "task_template"]

_LOCK = threading.Lock()
_BRIDGES: dict[tuple[str, int], Any] = {}


class ConnectorTask(AsyncConnectorExecutorMixin, TaskTemplate):  # type: ignore[misc]
    """A Flyte 2 task run by a flyte-connector connector: subclass it, set `connector` to
    the connector class, and return the task's own settings from `settings()`.

    `inputs` and `outputs` map names to Python types (the interface the backend checks);
    `secrets` maps a keyword argument of the connector's methods to the name of a Flyte
    secret, `configs` gives plain keyword arguments.
    """

    connector: ClassVar[type[AsyncConnector]]

    def __init__(self, name: str, *, inputs: Optional[Mapping[str, type]] = None,
                 outputs: Optional[Mapping[str, type]] = None,
                 secrets: Optional[Mapping[str, str]] = None,
                 configs: Optional[Mapping[str, str]] = None, **kwargs: Any) -> None:
        interface = NativeInterface({k: (v, None) for k, v in (inputs or {}).items()},
                                    dict(outputs or {}))
        kwargs.setdefault("image", None)
        super().__init__(name=name, interface=interface,
                         task_type=self.connector.task_type_name,
                         task_type_version=self.connector.task_type_version, **kwargs)
        self.connector_secrets = dict(secrets or {})
        self.connector_configs = dict(configs or {})

    def settings(self) -> dict[str, Any]:
        """The task's own part of `custom` (what the connector reads from the template)."""
        return {}

    def custom_config(self, sctx: SerializationContext) -> dict[str, Any]:
        """`custom` as the backend reads it: the settings, `secrets` and `configs`."""
        return task_custom(self.settings(), self.connector_secrets, self.connector_configs)

    async def execute(self, **kwargs: Any) -> Any:
        """Run locally through the Flyte SDK: our connector, bridged into its registry."""
        local_bridge(self.connector())
        result = await super().execute(**kwargs)
        if not isinstance(result, tuple):
            return result
        # The mixin returns the outputs in the serialized interface's order (sorted by
        # name); the caller expects the order they were declared in.

        typed: Any = transform_native_to_typed_interface(self.native_interface)
        by_name = dict(zip((v.key for v in typed.outputs.variables), result))
        ordered = tuple(by_name[name] for name in self.native_interface.outputs)
        return ordered[0] if len(ordered) == 1 else ordered


def is_flyte_task(value: Any) -> bool:
    """True for a Flyte SDK task object (what `flyte-connector test module:attr` accepts)."""
    return isinstance(value, TaskTemplate)


def task_template(task: Any, project: str = "local", domain: str = "development",
                  version: str = "local") -> tasks_pb2.TaskTemplate:
    """The TaskTemplate the Flyte SDK serializes for `task` (the one the backend sends in
    CreateTask). A task not yet in an environment is given one named after it, as
    `flyte.TaskEnvironment.from_task` would."""
    if getattr(task, "parent_env_name", None) is None:
        task = copy.copy(task)
        task.parent_env_name = task.name
    context = SerializationContext(project=project, domain=domain, version=version)
    return get_proto_task(task, context)


def local_bridge(connector: AsyncConnector) -> Any:
    """The Flyte SDK connector that runs `connector` for local Flyte runs, registered
    (once per task type) in the Flyte SDK's registry."""
    key = (connector.task_type_name, connector.task_type_version)
    with _LOCK:
        bridge = _BRIDGES.get(key)
        if bridge is None:
            bridge = _BRIDGES[key] = _Bridge(connector)
            FlyteRegistry.register(bridge, override=True)
        return bridge


@dataclasses.dataclass
class _BridgeMeta(FlyteResourceMeta):  # type: ignore[misc]
    """What the bridge keeps between calls: our meta's bytes and what the backend keeps
    (the template's output types, the prefix, the configs)."""

    data: bytes
    template: Any
    output_prefix: str
    configs: dict[str, str]


class _Bridge(FlyteAsyncConnector[_BridgeMeta]):  # type: ignore[misc]
    """Our connector as a Flyte SDK connector, called through our `Dispatcher`."""

    metadata_type = _BridgeMeta

    def __init__(self, connector: AsyncConnector) -> None:
        registry = ConnectorRegistry()
        registry.register(connector)
        self.name = connector.name
        self.task_type_name = connector.task_type_name
        self.task_type_version = connector.task_type_version
        self.dispatcher = Dispatcher(registry)

    async def create(self, task_template: tasks_pb2.TaskTemplate, output_prefix: str,
                     inputs: Optional[dict[str, Any]] = None, task_execution_metadata: Any = None,
                     **secrets: Any) -> _BridgeMeta:
        """CreateTask as the backend sends it, built from the Flyte SDK's native values."""
        # The Flyte SDK's local execution gives no execution metadata; neither do we. It
        # resolves `custom.secrets` itself (into `secrets`); the configs are ours to add.
        configs = _configs(task_template)
        request = pb.CreateTaskRequest(
            template=task_template, inputs=json_to_inputs(inputs or {}, task_template.interface),
            output_prefix=output_prefix, connection=_connection(secrets, configs),
        )
        response = await self.dispatcher.create(request, Scope())
        return _BridgeMeta(bytes(response.resource_meta), task_template, output_prefix, configs)

    async def get(self, resource_meta: _BridgeMeta, **secrets: Any) -> Any:
        """GetTask; outputs read with the declared types, in the interface's order."""
        request = pb.GetTaskRequest(
            task_category=self._category(), resource_meta=resource_meta.data,
            output_prefix=resource_meta.output_prefix,
            connection=_connection(secrets, resource_meta.configs),
        )
        resource = (await self.dispatcher.get(request, Scope())).resource
        return FlyteResource(phase=resource.phase, message=resource.message,
                             log_links=list(resource.log_links),
                             outputs=_outputs(resource, resource_meta.template))

    async def delete(self, resource_meta: _BridgeMeta, **secrets: Any) -> None:
        """DeleteTask."""
        request = pb.DeleteTaskRequest(
            task_category=self._category(), resource_meta=resource_meta.data,
            connection=_connection(secrets, resource_meta.configs),
        )
        await self.dispatcher.delete(request, Scope())

    def _category(self) -> Any:
        return category_message((self.task_type_name, self.task_type_version))


def _configs(template: Any) -> dict[str, str]:
    """The template's `custom.configs`, as the backend puts them in the connection."""
    custom = template_custom(template)
    configs = custom.get("configs") or {}
    return {str(k): str(v) for k, v in configs.items()} if isinstance(configs, dict) else {}


def _connection(secrets: Mapping[str, Any], configs: Mapping[str, str]) -> Any:
    if not secrets and not configs:
        return None
    return Connection(secrets={k: str(v) for k, v in secrets.items()}, configs=dict(configs))


def _outputs(resource: Any, template: Any) -> Optional[dict[str, Any]]:
    """The outputs as Python values of the declared types, in the interface's order."""
    if not resource.HasField("outputs"):
        return None
    declared = [(v.key, v.value.type) for v in template.interface.outputs.variables]
    given = {item.name: item.value for item in resource.outputs.literals}
    return {name: literal_to_python(given[name], kind, name, role="output")
            for name, kind in declared if name in given}
