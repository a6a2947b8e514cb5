"""Recognise plugins written against another SDK: the Flyte SDK's `flyte.connectors` API
or flytekit's connector API (Flyte 1).

Discovery calls `before_import` before importing a plugin and `adopt` after; both look at
`sys.modules` only, so the core never imports `flyte` or `flytekit`. When the plugin turns
out to be one of theirs, the matching adapter (`connector_cli.adapters.flyte_sdk` or
`connector_cli.adapters.flytekit`) is imported and registers a wrapper for each of its
connectors.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

FLYTE_MODULE = "flyte.connectors"
INSTALL_HINT = "pip install 'flyte-connector[flyte]'"
FLYTEKIT_MODULE = "flytekit.extend.backend.base_connector"
FLYTEKIT_HINT = "pip install 'flyte-connector[flytekit]'"
FLYTEKIT_GROUP = "flytekit.plugins"
"""flytekit's entry-point group: `import flytekit` loads every plugin in it, and
`pyflyte serve connector` serves the connectors they register."""
FLYTEKIT_BUILT_INS = ("flytekit.sensor.sensor_engine", "flytekit.extras.webhook.connector")
"""flytekit's own connectors, which `pyflyte serve connector` always serves."""


def before_import() -> frozenset[int]:
    """Which foreign connectors are registered before a plugin's import (ids)."""
    ids: frozenset[int] = frozenset()
    if FLYTE_MODULE in sys.modules:
        from connector_cli.adapters import flyte_sdk

        ids |= frozenset(id(c) for c in flyte_sdk.registered())
    if FLYTEKIT_MODULE in sys.modules:
        from connector_cli.adapters import flytekit

        ids |= frozenset(id(c) for c in flytekit.registered())
    return ids


def adopt(module_name: str, target: Any, before: frozenset[int],
          add: Callable[[Any], None]) -> bool:
    """`add` (register) a wrapper of each foreign connector a plugin provides; False when
    it is neither a Flyte SDK nor a flytekit plugin."""
    if FLYTE_MODULE in sys.modules:
        from connector_cli.adapters import flyte_sdk

        if flyte_sdk.adopt(module_name, target, before, add):
            return True
    if FLYTEKIT_MODULE in sys.modules:
        from connector_cli.adapters import flytekit

        return flytekit.adopt(module_name, target, before, add)
    return False


def load_flytekit() -> None:
    """Import the flytekit adapter, and flytekit without its `flytekit.plugins` (discovery
    loads each of those in isolation); a broken flytekit shows in each plugin's own import."""
    try:
        from connector_cli.adapters import flytekit  # noqa: F401
    except Exception:  # noqa: BLE001 - each flytekit plugin's import reports it
        return


def needs_flyte(exc: BaseException) -> bool:
    """True when an import failed because the Flyte SDK (`flyte`) is not installed."""
    return _missing(exc, "flyte")


def needs_flytekit(exc: BaseException) -> bool:
    """True when an import failed because flytekit (or Flyte 1's `flyteidl`) is not
    installed."""
    return _missing(exc, "flytekit") or _missing(exc, "flyteidl")


def _missing(exc: BaseException, package: str) -> bool:
    name = getattr(exc, "name", None) or ""
    return isinstance(exc, ModuleNotFoundError) and (
        name == package or name.startswith(package + "."))
