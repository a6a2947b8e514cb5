"""Import-time registration: `ConnectorRegistry.register(MyConnector())` at a module's top.

The primary way to publish a connector is an entry point naming its class
(`hello = "hello_connector:HelloConnector"`); discovery then registers it into the registry
it is loading. Older plugins instead register at import time through class-level calls.
This module is everything that keeps them working, fenced in one place:

- class-level calls go to the *default* registry: the one discovery `activate`s while it
  imports a plugin, else the process-wide root registry;
- while a plugin loads, every registration is collected and tagged with its origin;
- a module runs its top-level `register` calls only once per process, so the import log
  keeps them and `import_plugin` replays them through the next registry's `register`.

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


def loading_origin() -> Optional[Origin]:
    """The origin of the plugin being loaded, for `register` to tag its rows with."""
    loading = _loading.get()
    return loading.origin if loading is not None else None


def record(row: Registration) -> None:
    """Note a registration made while a plugin loads."""
    loading = _loading.get()
    if loading is not None:
        loading.made.append(row)


class DefaultOrSelf:
    """Method descriptor: on an instance it binds to it, on the class to the default registry."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __get__(self, obj: Optional[ConnectorRegistry], owner: type[ConnectorRegistry]) -> Any:
        return self.fn.__get__(obj if obj is not None else default_registry(), owner)


def import_plugin(
    module_name: str, registry: ConnectorRegistry, made: list[Registration]
) -> types.ModuleType:
    """Import a plugin module inside `activate(registry)`, replaying its import-time
    registrations into `registry` when the module was imported before."""
    if module_name in _import_log and module_name in sys.modules:
        _replay(registry, _import_log[module_name])
        return sys.modules[module_name]
    if module_name in sys.modules:
        _replay(registry, _registered_elsewhere(module_name))
        return sys.modules[module_name]
    start = len(made)
    module = importlib.import_module(module_name)
    _import_log[module_name] = made[start:]
    return module


def _replay(registry: ConnectorRegistry, rows: list[Registration]) -> None:
    for row in rows:
        registry.register(row.connector)


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
