"""How the dispatcher reaches one task type's connector, worked out once per registry change.

A `Route` holds the connector, its meta decoder, its inputs converter, whether its metas
are signed, and how to call `create`, `get` and `delete`: the connector's own bound method
for a plain `async def` (one coroutine per call), else `call_method` (a worker thread, or
the connector's own loop).
"""

from __future__ import annotations

import functools
from concurrent.futures import Executor
from typing import Any, Awaitable, Callable, Optional

from connector_cli.sdk.connector import AsyncConnector, call_method, method_kind
from connector_cli.sdk.resource_meta import meta_decoder


class Route:
    """What serving one task type needs, worked out once per registry change rather than per
    call: the connector, its meta decoder, how its inputs are converted (`convert`: None for
    a `raw_inputs` connector), and how to call `create`, `get` and `delete`."""

    __slots__ = ("connector", "name", "version", "decode", "convert", "signed", "create", "get",
                 "delete")

    def __init__(self, connector: AsyncConnector, name: str, version: int,
                 executor: Optional[Executor], sign_foreign: bool = False) -> None:
        self.connector, self.name, self.version = connector, name, version
        self.decode = meta_decoder(connector.metadata_type)
        # Imported here, once per route, not per CreateTask (an import statement in the
        # call cost 4.6k instructions of ~405k, callgrind) nor at start-up (2.8 ms).
        from connector_cli.literals import inputs_to_python

        self.convert: Optional[Callable[..., dict[str, Any]]] = \
            None if connector.raw_inputs else inputs_to_python
        self.signed = connector.sign_resource_meta or (
            sign_foreign and getattr(connector, "sdk", None) is not None)
        self.create = _caller(connector, "create", executor)
        self.get = _caller(connector, "get", executor)
        self.delete = _caller(connector, "delete", executor)


def _caller(connector: AsyncConnector, method: str,
            executor: Optional[Executor]) -> Callable[..., Awaitable[Any]]:
    """The connector's own bound method for a plain `async def` (the usual case: one
    coroutine per call); for an `own_loop` connector's `async def` that method's coroutine
    handed straight to its loop thread (every Flyte SDK connector: 3 us a call less than
    through `call_method`); else `call_method` (threads) bound to it."""
    if method_kind(connector, method) == "async":
        fn = getattr(connector, method)
        if not connector.own_loop:
            return fn  # type: ignore[no-any-return]
        from connector_cli.sdk.loops import loop_of

        run = loop_of(connector).run
        return lambda *args, **kwargs: run(fn(*args, **kwargs))
    return functools.partial(call_method, connector, method, executor=executor)
