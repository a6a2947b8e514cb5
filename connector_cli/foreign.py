"""Recognise plugins written against the Flyte SDK's `flyte.connectors` API.

Discovery calls `before_import` before importing a plugin and `adopt` after; both look at
`sys.modules` only, so the core never imports `flyte`. When the plugin turns out to be a
Flyte SDK plugin, the adapter (`connector_cli.adapters.flyte_sdk`) is imported and
registers a wrapper for each of its connectors.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

FLYTE_MODULE = "flyte.connectors"
INSTALL_HINT = "pip install 'flyte-connector[flyte]'"


def before_import() -> frozenset[int]:
    """Which Flyte SDK connectors are registered before a plugin's import (ids)."""
    if FLYTE_MODULE not in sys.modules:
        return frozenset()
    from connector_cli.adapters import flyte_sdk

    return frozenset(id(c) for c in flyte_sdk.registered())


def adopt(module_name: str, target: Any, before: frozenset[int],
          add: Callable[[Any], None]) -> bool:
    """`add` (register) a wrapper of each Flyte SDK connector a plugin provides; False
    when it is not a Flyte SDK plugin."""
    if FLYTE_MODULE not in sys.modules:
        return False
    from connector_cli.adapters import flyte_sdk

    return flyte_sdk.adopt(module_name, target, before, add)


def needs_flyte(exc: BaseException) -> bool:
    """True when an import failed because the Flyte SDK (`flyte`) is not installed."""
    name = getattr(exc, "name", None) or ""
    return isinstance(exc, ModuleNotFoundError) and (name == "flyte" or name.startswith("flyte."))
