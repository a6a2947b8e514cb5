"""pytest fixtures for connector authors, installed as a `pytest11` plugin.

Installing flyte-connector makes these fixtures available in every pytest suite:

- `connector_registry`: a fresh, empty `ConnectorRegistry` for the test.
- `run_connector`: `await run_connector(template, inputs, connector=MyConnector())` runs
  a task through create -> get ... -> delete (`connector_cli.testing.run_task`), with the
  test's temporary directory as the output prefix and `connector_registry` as the default
  target.
- `connector_daemon`: `daemon = await connector_daemon(MyConnector())` starts a real
  daemon on 127.0.0.1 with an ephemeral port (`daemon.client`, `daemon.address`); every
  daemon started is stopped when the test ends. Needs pytest-asyncio.

The module imports nothing heavy, so suites that never use the fixtures pay nothing.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable

import pytest

if TYPE_CHECKING:
    from connector_cli.sdk.registry import ConnectorRegistry
    from connector_cli.testing import RunningDaemon, TaskRunResult

pytest_asyncio: Any
try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised only without pytest-asyncio
    pytest_asyncio = None


@pytest.fixture
def connector_registry() -> ConnectorRegistry:
    """A fresh, empty registry; register the connectors under test on it."""
    from connector_cli.sdk.registry import ConnectorRegistry

    return ConnectorRegistry()


@pytest.fixture
def run_connector(
    connector_registry: ConnectorRegistry, tmp_path: Path
) -> Callable[..., Awaitable[TaskRunResult]]:
    """`run_task` with `connector_registry` as the default target and an output prefix
    under the test's tmp_path; pass `connector=` (a connector, registry or daemon) to
    run something else. Other keyword arguments go to `run_task`."""
    from connector_cli.testing import run_task

    runs = itertools.count(1)

    async def run(template: Any, inputs: Any = None, *, connector: Any = None,
                  **options: Any) -> TaskRunResult:
        if "output_prefix" not in options:
            prefix = tmp_path / f"run-{next(runs)}"
            prefix.mkdir()
            options["output_prefix"] = prefix
        target = connector if connector is not None else connector_registry
        return await run_task(target, template, inputs, **options)

    return run


async def _daemons() -> AsyncIterator[Callable[..., Awaitable[RunningDaemon]]]:
    import contextlib

    from connector_cli.sdk.connector import AsyncConnector
    from connector_cli.sdk.registry import ConnectorRegistry
    from connector_cli.testing import registry_with, serve_in_background

    async with contextlib.AsyncExitStack() as stack:

        async def start(*connectors: Any, modules: Any = (), plugins: Any = (),
                        **server_options: Any) -> RunningDaemon:
            if len(connectors) == 1 and isinstance(connectors[0], ConnectorRegistry):
                registry = connectors[0]
            elif all(isinstance(c, AsyncConnector) for c in connectors):
                registry = registry_with(*connectors)
            else:
                raise TypeError("connector_daemon takes connectors or one ConnectorRegistry")
            return await stack.enter_async_context(serve_in_background(
                registry, modules=modules, plugins=plugins, **server_options))

        yield start


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def connector_daemon() -> AsyncIterator[Callable[..., Awaitable[RunningDaemon]]]:
        """A factory: `await connector_daemon(*connectors | registry, modules=(), plugins=(),
        **server_options)` starts a daemon (see `serve_in_background`); all stop at teardown."""
        async for start in _daemons():
            yield start

else:  # pragma: no cover

    @pytest.fixture
    def connector_daemon() -> None:
        """Needs pytest-asyncio."""
        pytest.fail("the connector_daemon fixture needs pytest-asyncio: pip install pytest-asyncio")
