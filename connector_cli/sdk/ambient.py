"""Import-time registration: `ConnectorRegistry.register(MyConnector())` at a module's top.

The primary way to publish a connector is an entry point naming its class
(`hello = "hello_connector:HelloConnector"`); discovery then registers it into the registry
it is loading. Older plugins instead register at import time through class-level calls.
This module is everything that keeps them working, fenced in one place:

- class-level calls (`ClassLevel` in the registry sends them here) go to the *default*
  registry: the one discovery `activate`s while it imports a plugin, else the
  process-wide root registry;
- while a plugin loads, each class-level registration is tagged with the plugin's origin
  and collected, so discovery sees what the import registered;
- a module runs its top-level `register` calls only once per process, so the import log
  keeps them and `import_plugin` replays them into the next registry.

The registry itself never reads this state: it is a wrapper around the registry.

`reset()` starts the root registry afresh (for tests).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import sys
import types
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

if TYPE_CHECKING:
    from connector_cli.sdk.registry import ConnectorRegistry, Origin, Registration


class _Loading:
    """The plugin being loaded: where it came from and what it registered so far."""

    __slots__ = ("origin", "made")

    def __init__(self, origin: Optional[Origin], made: list[Registration]) -> None:
        self.origin = origin
        self.made = made


_root: Optional[ConnectorRegistry] = None
_current: contextvars.ContextVar[Optional[ConnectorRegistry]] = contextvars.ContextVar(
    "connector_registry", default=None
)
_loading: contextvars.ContextVar[Optional[_Loading]] = contextvars.ContextVar(
    "connector_registry_loading", default=None
)
_import_log: dict[str, list[Registration]] = {}


def root_registry() -> ConnectorRegistry:
    """The process-wide registry that class-level calls use outside `activate`."""
    global _root
    if _root is None:
        from connector_cli.sdk.registry import ConnectorRegistry

        _root = ConnectorRegistry()
    return _root


def default_registry() -> ConnectorRegistry:
    """The registry class-level calls go to right now."""
    current = _current.get()
    return current if current is not None else root_registry()


@contextlib.contextmanager
def activate(
    registry: ConnectorRegistry, origin: Optional[Origin] = None
) -> Iterator[list[Registration]]:
    """Make `registry` the default for the block and collect what gets registered."""
    loading = _Loading(origin, [])
    current_token = _current.set(registry)
    loading_token = _loading.set(loading)
    try:
        yield loading.made
    finally:
        _loading.reset(loading_token)
        _current.reset(current_token)


def class_level(method: str) -> Callable[..., Any]:
    """`ConnectorRegistry.<method>` called on the class: the default registry's method;
    `register` also tags the row with the loading plugin's origin and collects it."""
    registry = default_registry()
    if method != "register":
        return getattr(registry, method)  # type: ignore[no-any-return]

    @functools.wraps(registry.register)
    def register(connector: Any, override: bool = False) -> Registration:
        loading = _loading.get()
        row = registry.register(connector, override,
                                origin=loading.origin if loading is not None else None)
        if loading is not None:
            loading.made.append(row)
        return row

    return register


def import_plugin(
    module_name: str, registry: ConnectorRegistry, made: list[Registration],
    origin: Optional[Origin] = None,
) -> types.ModuleType:
    """Import a plugin module inside `activate(registry, origin)`, replaying its import-time
    registrations into `registry` (tagged with `origin`, collected in `made`) when the
    module was imported before."""
    if module_name in _import_log and module_name in sys.modules:
        made += _replay(registry, _import_log[module_name], origin)
        return sys.modules[module_name]
    if module_name in sys.modules:
        made += _replay(registry, _registered_elsewhere(module_name), origin)
        return sys.modules[module_name]
    start = len(made)
    module = importlib.import_module(module_name)
    _import_log[module_name] = made[start:]
    return module


def _replay(registry: ConnectorRegistry, rows: list[Registration],
            origin: Optional[Origin]) -> list[Registration]:
    return [registry.register(row.connector, origin=origin) for row in rows]


def _registered_elsewhere(module_name: str) -> list[Registration]:
    """Connectors defined in a module that was imported before discovery saw it (by user
    code, or by another plugin): its import-time registrations went elsewhere, so find them
    in the import log and the root registry."""
    rows = [row for logged in _import_log.values() for row in logged]
    rows += root_registry().registrations()
    found: dict[int, Registration] = {}
    for row in rows:
        module = type(row.connector).__module__
        if module == module_name or module.startswith(module_name + "."):
            found.setdefault(id(row.connector), row)
    return list(found.values())


def reset() -> None:
    """Start the root registry afresh and forget the logged registrations of modules no
    longer imported (for tests: a test that drops its plugin from `sys.modules` gets it
    imported, and registered, anew)."""
    global _root
    _root = None
    for name in [name for name in _import_log if name not in sys.modules]:
        del _import_log[name]
