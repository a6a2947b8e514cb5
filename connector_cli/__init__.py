"""flyte-connector: build, run and try Flyte connectors.

Public SDK names are imported lazily so `flyte-connector --help` does not pay for
protobuf; `from connector_cli import AsyncConnector` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from connector_cli._version import __version__

_EXPORTS = {
    "AsyncConnector": "connector_cli.sdk.connector",
    "Resource": "connector_cli.sdk.connector",
    "is_terminal_phase": "connector_cli.sdk.connector",
    "convert_to_flyte_phase": "connector_cli.sdk.connector",
    "phase_name": "connector_cli.sdk.connector",
    "template_custom": "connector_cli.sdk.connector",
    "ResourceMeta": "connector_cli.sdk.resource_meta",
    "ConnectorRegistry": "connector_cli.sdk.registry",
    "ConnectorError": "connector_cli.errors",
    "ConnectorNotFound": "connector_cli.errors",
    "RegistrationError": "connector_cli.errors",
    "DuplicateConnectorError": "connector_cli.errors",
    "ResourceMetaError": "connector_cli.errors",
    "UnknownStateError": "connector_cli.errors",
    "UsageError": "connector_cli.errors",
    "TransientError": "connector_cli.errors",
    "log_page": "connector_cli.sdk.pages",
    "metric": "connector_cli.sdk.pages",
    "metrics_response": "connector_cli.sdk.pages",
    "FlyteFile": "connector_cli.literals",
    "FlyteDirectory": "connector_cli.literals",
    "StructuredDataset": "connector_cli.literals",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from connector_cli.errors import (
        ConnectorError,
        ConnectorNotFound,
        DuplicateConnectorError,
        RegistrationError,
        ResourceMetaError,
        TransientError,
        UnknownStateError,
        UsageError,
    )
    from connector_cli.literals import FlyteDirectory, FlyteFile, StructuredDataset
    from connector_cli.sdk.connector import (
        AsyncConnector,
        Resource,
        convert_to_flyte_phase,
        is_terminal_phase,
        phase_name,
        template_custom,
    )
    from connector_cli.sdk.pages import log_page, metric, metrics_response
    from connector_cli.sdk.registry import ConnectorRegistry
    from connector_cli.sdk.resource_meta import ResourceMeta


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'connector_cli' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
