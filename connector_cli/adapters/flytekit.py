"""Serve connectors written for flytekit (Flyte 1's SDK), unchanged.

The only module of this package that imports `flytekit`. Discovery imports it when a plugin
turns out to be a flytekit one (see `connector_cli.foreign`): a module that registers in
flytekit's `ConnectorRegistry`, or an `AsyncConnectorBase` / `SyncConnectorBase` subclass.
Each is wrapped in a `FlytekitConnector`, one of ours, so the daemon serves, lists and
counts it like any other, through both API generations.

The wrapper keeps `pyflyte serve connector`'s semantics: flytekit's model objects
(`TaskTemplate`, `LiteralMap`, `TaskExecutionMetadata`) built from the v1 messages by
flytekit's `from_flyte_idl` (when the connector reads them: `flytekit_models`), plain
`def` methods on a worker thread and `async def` ones awaited (flytekit's
`mirror_async_methods`), outputs converted by flytekit's own `Resource.to_flyte_idl` (its
type engine; plain values once per value: `flytekit_types`), `resource_meta` encoded and
decoded by the connector's own `metadata_type` (`flytekit_meta` for flat dataclasses;
bytes identical to flytekit's server, so a task in flight survives the switch both ways),
secrets looked up by the connector itself (`get_connector_secret`). Every call runs on an
event loop of the connector's own (`own_loop`), so one that blocks inside `async def`
cannot stall the daemon. A `SyncConnectorBase` connector (`is_sync`) answers Flyte 1's
ExecuteTaskSync; through Flyte 2, which has no sync call, its `create` runs `do` and
hands the result back as the meta that `get` then returns. Differences from flytekit's
server are listed in docs/migrating-from-flytekit.md.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.metadata
import inspect
import logging
import sys
import types
from typing import Any, Callable, ClassVar

from flyteidl.admin import agent_pb2 as v1
from flyteidl.core import literals_pb2
from flyteidl2.connector import connector_pb2 as pb

from connector_cli.adoption import Adopted, Adopter
from connector_cli.errors import ResourceMetaError
from connector_cli.foreign import FLYTEKIT_GROUP
from connector_cli.sdk.resource_meta import ResourceMeta
from connector_cli.v1_messages import recast


def _import_flytekit_alone() -> None:
    """Import flytekit without the plugins of its `flytekit.plugins` group. `import
    flytekit` loads every one of them and fails when one does; discovery loads each as a
    plugin of its own instead (connector_cli.discovery), so one broken plugin cannot take
    the others down."""
    if "flytekit" in sys.modules:
        return
    real = importlib.metadata.entry_points

    def without_kit_plugins(**params: Any) -> Any:
        return () if params.get("group") == FLYTEKIT_GROUP else real(**params)

    importlib.metadata.entry_points = without_kit_plugins  # type: ignore[assignment]
    try:
        flytekit = importlib.import_module("flytekit")
    finally:
        importlib.metadata.entry_points = real
    vars(flytekit)["entry_points"] = real  # its module-level name, for any later caller


_import_flytekit_alone()

from flytekit.extend.backend.base_connector import (  # noqa: E402 - after the import above
    ConnectorBase,
    SyncConnectorBase,
)
from flytekit.extend.backend.base_connector import (  # noqa: E402
    ConnectorRegistry as KitRegistry,
)

logger = logging.getLogger(__name__)
_NO_INPUTS = literals_pb2.LiteralMap()
_NO_METADATA = v1.TaskExecutionMetadata()

SDK = "flytekit"
FLYTEKIT_LOGGERS = ("flytekit", "user_space", "developer")


def _route_logging() -> None:
    """Send flytekit's log records through the daemon's handlers (its `--log-format`, its
    secret masking) instead of the handlers flytekit installs on its own loggers at import
    (rich or JSON text that bypasses both); flytekit's levels stay as configured."""
    for name in FLYTEKIT_LOGGERS:
        kit_logger = logging.getLogger(name)
        for handler in list(kit_logger.handlers):
            kit_logger.removeHandler(handler)
        kit_logger.propagate = True


_route_logging()


class FlytekitMeta(ResourceMeta):
    """Our handle on a flytekit `ResourceMeta`, encoded and decoded by the connector's own
    `metadata_type`: exactly the bytes flytekit's server stores."""

    kit_type: ClassVar[Any] = object

    def __init__(self, value: Any) -> None:
        self.value = value

    def encode(self) -> bytes:
        """The flytekit meta's own encoding (`flytekit_meta`: the same bytes)."""
        from connector_cli.adapters.flytekit_meta import encode

        return encode(self.value)

    @classmethod
    def decode(cls, data: bytes) -> FlytekitMeta:
        """Decode with the connector's `metadata_type`; bad bytes are INVALID_ARGUMENT."""
        from connector_cli.adapters.flytekit_meta import decode

        try:
            return cls(decode(cls.kit_type, data))
        except Exception as exc:  # noqa: BLE001 - any decoding failure means bad bytes
            raise ResourceMetaError(
                f"resource_meta is not a valid {getattr(cls.kit_type, '__name__', 'meta')} "
                f"({type(exc).__name__}); send the bytes CreateTask returned"
            ) from None

    def __repr__(self) -> str:
        return f"FlytekitMeta({self.value!r})"


class SyncResult(ResourceMeta):
    """What a sync connector's `do` answered (a v1 `Resource`), carried as the meta when
    Flyte 2 calls it as create -> get."""

    def __init__(self, value: v1.Resource) -> None:
        self.value = value

    def encode(self) -> bytes:
        """The v1 Resource's wire bytes."""
        data: bytes = self.value.SerializeToString()
        return data

    @classmethod
    def decode(cls, data: bytes) -> SyncResult:
        """Parse the v1 Resource; bad bytes are INVALID_ARGUMENT."""
        try:
            return cls(v1.Resource.FromString(data))
        except Exception:  # noqa: BLE001 - DecodeError and friends: bad bytes
            raise ResourceMetaError(
                "resource_meta is not a sync connector's result; send the bytes CreateTask "
                "returned"
            ) from None

    def __repr__(self) -> str:
        return f"SyncResult(phase {self.value.phase})"


class FlytekitConnector(Adopted):
    """One flytekit connector instance served as one of ours."""

    sdk: ClassVar[str] = SDK

    def __init__(self, inner: Any) -> None:
        super().__init__(inner, inner.task_category.name, inner.task_category.version)
        self.is_sync = isinstance(inner, SyncConnectorBase)
        if self.is_sync:
            self.metadata_type = SyncResult  # type: ignore[misc]
        else:
            kit_type = inner.metadata_type
            self.metadata_type = type(  # type: ignore[misc]
                f"FlytekitMeta[{getattr(kit_type, '__name__', kit_type)}]",
                (FlytekitMeta,), {"kit_type": kit_type, "__module__": __name__},
            )

    async def create(
        self, task_template: Any, output_prefix: str, inputs: Any = None,
        task_execution_metadata: Any = None, **kwargs: Any,
    ) -> ResourceMeta:
        """flytekit's models from the request (built when the connector reads them:
        `flytekit_models`), then the connector's create (or `do`)."""
        from connector_cli.adapters import flytekit_models as models

        template = models.task_template(task_template)
        if self.is_sync:
            result = await _mirror(
                self.inner.do, task_template=template, output_prefix=output_prefix,
                inputs=models.literal_map(inputs) if inputs is not None else None,
            )
            return SyncResult(await self._proto(result))
        meta = await _mirror(
            self.inner.create, task_template=template, output_prefix=output_prefix,
            inputs=models.literal_map(inputs if inputs is not None else _NO_INPUTS),
            task_execution_metadata=models.execution_metadata(
                task_execution_metadata if task_execution_metadata is not None
                else _NO_METADATA),
        )
        if not callable(getattr(meta, "encode", None)):
            from connector_cli.responses import ContractError

            raise ContractError(
                f"{self.name}.create returned {type(meta).__name__}; return its metadata_type"
            )
        return self.metadata_type(meta)  # type: ignore[call-arg]

    async def get(self, resource_meta: Any, **kwargs: Any) -> pb.Resource:
        """The connector's get, its Resource converted by flytekit's own `to_flyte_idl`."""
        if self.is_sync:
            proto = resource_meta.value
        else:
            proto = await self._proto(
                await _mirror(self.inner.get, resource_meta=resource_meta.value))
        resource: pb.Resource = self._queued(recast(proto, pb.Resource))
        return resource

    async def _proto(self, result: Any) -> v1.Resource:
        """A flytekit Resource as the v1 message; outputs that cannot be converted fail
        the task (a retried GetTask could not fix them), as in the Flyte SDK adapter."""
        from connector_cli.adapters.flytekit_types import resource_proto

        proto: v1.Resource = await self._converted(resource_proto, result, v1.Resource)
        return proto

    async def delete(self, resource_meta: Any, **kwargs: Any) -> None:
        """The connector's delete (nothing to cancel for a sync connector)."""
        if not self.is_sync:
            await _mirror(self.inner.delete, resource_meta=resource_meta.value)

    async def get_metrics(self, resource_meta: Any, **kwargs: Any) -> Any:
        """The connector's get_metrics, its v1 answer as the v2 message."""
        if self.is_sync:
            raise NotImplementedError(f"sync connector {self.name!r} has no metrics")
        response = await _mirror(self.inner.get_metrics, resource_meta=resource_meta.value)
        return recast(response, pb.GetTaskMetricsResponse)

    async def get_logs(self, resource_meta: Any, **kwargs: Any) -> Any:
        """The connector's get_logs, its v1 answer as the v2 message."""
        if self.is_sync:
            raise NotImplementedError(f"sync connector {self.name!r} has no logs")
        response = await _mirror(self.inner.get_logs, resource_meta=resource_meta.value)
        return recast(response, pb.GetTaskLogsResponse)

    def __repr__(self) -> str:
        return (f"<flytekit {type(self.inner).__name__} {self.name!r} serving "
                f"{self.task_type_name!r} v{self.task_type_version}>")


async def _mirror(fn: Callable[..., Any], **kwargs: Any) -> Any:
    """flytekit's `mirror_async_methods`: await `async def`, run plain `def` on a thread."""
    if _is_async(fn):
        return await fn(**kwargs)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(fn, **kwargs))


_ASYNC: dict[Any, bool] = {}


def _is_async(fn: Callable[..., Any]) -> bool:
    """`inspect.iscoroutinefunction(fn)`, kept per function of a bound method (a connector's
    methods: one look-up a call instead of inspect's unwrapping)."""
    func = fn.__func__ if type(fn) is types.MethodType else None
    if func is None:
        return inspect.iscoroutinefunction(fn)
    found = _ASYNC.get(func)
    if found is None:
        if len(_ASYNC) >= 1024:
            _ASYNC.clear()
        found = _ASYNC[func] = inspect.iscoroutinefunction(fn)
    return found


ADOPTER: Adopter[FlytekitConnector] = Adopter(
    lambda: list(KitRegistry._REGISTRY.values()), ConnectorBase, FlytekitConnector,
    built_in=("flytekit", "flytekitplugins"))
wrap, registered, adopt = ADOPTER.wrap, ADOPTER.registered, ADOPTER.adopt
is_kit_connector_class = ADOPTER.is_connector_class
