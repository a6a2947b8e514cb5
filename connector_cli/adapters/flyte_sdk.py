"""Serve connectors written against the Flyte SDK's `flyte.connectors` API, unchanged.

With `flyte_types` (the type engine's per-call work) and `flyte_tasks`, the only modules
of this package that import `flyte`. Discovery imports it when a plugin turns out to be
a Flyte SDK connector (see `connector_cli.foreign`); each Flyte connector
is wrapped in a `FlyteSdkConnector`, one of ours, so the daemon serves, lists and counts it
like any other. The wrapper keeps the Flyte SDK server's semantics: inputs converted by
Flyte's own type engine, outputs by Flyte's own rules, `resource_meta` through the
connector's own `metadata_type`, the connection as keyword arguments. It runs every call
of a connector on an event loop of that connector's own (`own_loop`), so one that blocks
inside `async def` cannot stall the daemon. Differences are listed in
docs/migrating-from-flyte.md; what it costs against the Flyte SDK's own server is in
docs/serve.md ("Flyte SDK connectors") and `make bench` (bench/bench_flyte_sdk.py).
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any, AsyncIterator, Callable, ClassVar, Optional

from flyte.connectors import AsyncConnector as FlyteAsyncConnector
from flyte.connectors import ConnectorRegistry as FlyteRegistry
from flyteidl2.connector import connector_pb2 as pb

from connector_cli.adapters.flyte_types import native_inputs, resource_proto
from connector_cli.adoption import Adopted, Adopter
from connector_cli.errors import ResourceMetaError, TransientError
from connector_cli.sdk.resource_meta import ResourceMeta

logger = logging.getLogger(__name__)

SDK = "flyte-sdk"


class FlyteMeta(ResourceMeta):
    """Our handle on a Flyte SDK `ResourceMeta`: encoded and decoded by the connector's own
    `metadata_type`, so the bytes are exactly those the Flyte SDK's server would store.

    When that type keeps the Flyte SDK's own JSON `encode` and `decode` and its dataclass
    fields hold plain values, both are done here with the same result and less work:
    encoding reads the fields directly (`asdict` copies deeply, for nothing, when every
    value is a str, int, float, bool or None), and decoding keeps the constructor's
    keyword arguments per meta (GetTask is polled with the same bytes) and calls the
    class with them, as `dataclass_from_dict` does. Measured in a tight loop on the
    bench's two-field meta: encode 3.4 -> 2.0 us, decode 2.6 -> 0.5 us."""

    flyte_type: ClassVar[type] = object
    plain_fields: ClassVar[Optional[tuple[str, ...]]] = None  # set when the fast path applies

    def __init__(self, value: Any) -> None:
        self.value = value

    def encode(self) -> bytes:
        """The Flyte SDK meta's own encoding."""
        value = self.value
        names = self.plain_fields
        if names is not None and type(value) is self.flyte_type:
            fields = {name: getattr(value, name) for name in names}
            if all(type(v) in _PLAIN for v in fields.values()):
                return json.dumps(fields).encode("utf-8")
        data: bytes = value.encode()
        return data

    @classmethod
    def decode(cls, data: bytes) -> FlyteMeta:
        """Decode with the Flyte connector's `metadata_type`; bad bytes are INVALID_ARGUMENT."""
        if cls.plain_fields is not None:
            kwargs = _KWARGS.get((cls, data))
            if kwargs is not None:
                return cls(cls.flyte_type(**kwargs))
        try:
            value = cls.flyte_type.decode(data)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - any decoding failure means bad bytes
            raise ResourceMetaError(
                f"resource_meta is not a valid {cls.flyte_type.__name__} "
                f"({type(exc).__name__}); send the bytes CreateTask returned"
            ) from None
        if cls.plain_fields is not None and len(data) <= _KWARGS_BYTES:
            _keep_kwargs(cls, data)
        return cls(value)

    def __repr__(self) -> str:
        return f"FlyteMeta({self.value!r})"


_PLAIN = frozenset({str, int, float, bool, type(None)})
_KWARGS: dict[tuple[type, bytes], dict[str, Any]] = {}
_KWARGS_ENTRIES = 4096
_KWARGS_BYTES = 1024


def _keep_kwargs(cls: type[FlyteMeta], data: bytes) -> None:
    """Keep the keyword arguments the Flyte SDK's decode passed for `data`, when they are
    all plain values (its `dataclass_from_dict` then calls the class with exactly them)."""
    kwargs = json.loads(data.decode("utf-8"))
    if isinstance(kwargs, dict) and all(type(v) in _PLAIN for v in kwargs.values()):
        if len(_KWARGS) >= _KWARGS_ENTRIES:
            _KWARGS.clear()
        _KWARGS[(cls, data)] = kwargs


def _plain_fields(flyte_type: Any) -> Optional[tuple[str, ...]]:
    """The field names of a dataclass meta that keeps the Flyte SDK's own `encode` and
    `decode` and has no dataclass-typed field (which `decode` would build recursively)."""
    import dataclasses

    from flyte.connectors import ResourceMeta as FlyteResourceMeta

    stock_decode = getattr(FlyteResourceMeta.decode, "__func__", None)
    if not isinstance(flyte_type, type) or not dataclasses.is_dataclass(flyte_type) or \
            getattr(flyte_type, "encode", None) is not FlyteResourceMeta.encode or \
            getattr(getattr(flyte_type, "decode", None), "__func__", None) is not stock_decode:
        return None
    fields = dataclasses.fields(flyte_type)
    if any(dataclasses.is_dataclass(f.type) for f in fields):
        return None
    return tuple(f.name for f in fields)


class FlyteSdkConnector(Adopted):
    """One Flyte SDK connector instance served as one of ours."""

    sdk: ClassVar[str] = SDK

    def __init__(self, inner: Any) -> None:
        super().__init__(inner, inner.task_type_name, inner.task_type_version)
        flyte_type = getattr(inner, "metadata_type", None) or _declared_meta(type(inner))
        self.metadata_type = type(  # type: ignore[misc]
            f"FlyteMeta[{getattr(flyte_type, '__name__', flyte_type)}]",
            (FlyteMeta,), {"flyte_type": flyte_type, "__module__": __name__,
                           "plain_fields": _plain_fields(flyte_type)},
        )

    async def create(
        self, task_template: Any, output_prefix: str, inputs: Any = None,
        task_execution_metadata: Any = None, **kwargs: Any,
    ) -> ResourceMeta:
        """Inputs to native values by Flyte's type engine, then the Flyte connector's create."""
        native = await native_inputs(task_template, inputs)
        meta = await self.inner.create(
            task_template=task_template, inputs=native, output_prefix=output_prefix,
            task_execution_metadata=task_execution_metadata or pb.TaskExecutionMetadata(),
            **kwargs,
        )
        if not callable(getattr(meta, "encode", None)):
            from connector_cli.responses import ContractError

            raise ContractError(
                f"{self.name}.create returned {type(meta).__name__}; return its metadata_type"
            )
        return self.metadata_type(meta)  # type: ignore[call-arg]

    async def get(self, resource_meta: Any, **kwargs: Any) -> pb.Resource:
        """The Flyte connector's get, its Resource converted by Flyte's own rules."""
        try:
            resource = await self.inner.get(resource_meta=resource_meta.value, **kwargs)
        except RuntimeError as exc:
            if _http_transient(exc):
                raise TransientError(str(exc)) from exc
            raise
        proto = await self._converted(resource_proto, resource, pb.Resource)
        return self._queued(proto)

    async def delete(self, resource_meta: Any, **kwargs: Any) -> None:
        """The Flyte connector's delete."""
        await self.inner.delete(resource_meta=resource_meta.value, **kwargs)

    async def get_metrics(self, resource_meta: Any, **kwargs: Any) -> Any:
        """The Flyte connector's get_metrics, given the request fields it accepts."""
        fn = self.inner.get_metrics
        return await fn(resource_meta=resource_meta.value, **_accepted(fn, kwargs))

    async def get_logs(  # type: ignore[override]
        self, resource_meta: Any, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """The Flyte connector's get_logs: a coroutine of one response or a generator of pages."""
        fn = self.inner.get_logs
        result = fn(resource_meta=resource_meta.value, **_accepted(fn, kwargs))
        if inspect.isasyncgen(result):
            async for page in result:
                yield page
        else:
            yield await result

    def __repr__(self) -> str:
        return (f"<Flyte SDK {type(self.inner).__name__} {self.name!r} serving "
                f"{self.task_type_name!r} v{self.task_type_version}>")


# The reason phrases of HTTP 429 and 5xx: flyteplugins-databricks (and connectors written
# like it) raise RuntimeError("... with error: <reason>") for any status but 200.
_TRANSIENT_REASONS = ("Too Many Requests", "Internal Server Error", "Bad Gateway",
                      "Service Unavailable", "Gateway Timeout")


def _http_transient(exc: RuntimeError) -> bool:
    """True for a Flyte SDK connector's RuntimeError that reports HTTP 429 or 5xx by its
    reason phrase. Connection errors, timeouts and clients' own status errors (aiohttp,
    google-api-core) are recognised by `connector_cli.shield.is_transient` directly."""
    return str(exc).rstrip().endswith(_TRANSIENT_REASONS)


def _declared_meta(cls: type) -> Any:
    """`M` of `class C(AsyncConnector[M])` when the class sets no `metadata_type`."""
    import typing

    for klass in cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            args = typing.get_args(base)
            if args and isinstance(args[0], type):
                return args[0]
    from flyte.connectors import ResourceMeta as FlyteResourceMeta

    return FlyteResourceMeta


def _accepted(fn: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The subset of `kwargs` a method accepts: all with `**kwargs`, else the named ones."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return kwargs
    names = {p.name for p in params}
    return {k: v for k, v in kwargs.items() if k in names}


ADOPTER: Adopter[FlyteSdkConnector] = Adopter(
    lambda: list(FlyteRegistry._REGISTRY.values()), FlyteAsyncConnector, FlyteSdkConnector)
wrap, registered, adopt = ADOPTER.wrap, ADOPTER.registered, ADOPTER.adopt
is_flyte_connector_class = ADOPTER.is_connector_class
