"""connector_cli.sdk.ambient: import-time `ConnectorRegistry.register(...)`, fenced in."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from connector_cli import AsyncConnector, ConnectorRegistry, DuplicateConnectorError, Resource
from connector_cli.discovery import REGISTRATION_ERROR, discover
from connector_cli.sdk import ambient

MODULE = """
from connector_cli import AsyncConnector, ConnectorRegistry

class AmbientConnector(AsyncConnector):
    task_type_name = "ambient"
    async def create(self, task_template, output_prefix, inputs=None, **kwargs): ...
    async def get(self, resource_meta, **kwargs): ...
    async def delete(self, resource_meta, **kwargs): ...

ConnectorRegistry.register(AmbientConnector())
"""


class Other(AsyncConnector):
    task_type_name = "ambient"

    async def create(self, task_template: Any, output_prefix: str, inputs: Any = None,
                     **kwargs: Any) -> Any: ...

    async def get(self, resource_meta: Any, **kwargs: Any) -> Resource: ...

    async def delete(self, resource_meta: Any, **kwargs: Any) -> None: ...


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A throwaway module that registers at import time, imported fresh by each test."""
    name = f"ambient_plugin_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_outside_discovery_class_level_calls_reach_the_root_registry_until_reset() -> None:
    ambient.reset()
    ConnectorRegistry.register(Other())
    assert ambient.root_registry().categories() == [("ambient", 0)]
    assert ConnectorRegistry.default() is ambient.root_registry()
    ambient.reset()
    assert ambient.root_registry().categories() == []


def test_a_second_registry_gets_the_connectors_again_through_its_register(
    registry: ConnectorRegistry, plugin_module: str
) -> None:
    first = discover(registry, modules=[plugin_module], plugins=())
    assert first.loaded and registry.categories() == [("ambient", 0)]
    taken = ConnectorRegistry()
    taken.register(Other())
    second = discover(taken, modules=[plugin_module], plugins=())
    assert [f.reason for f in second.failed] == [REGISTRATION_ERROR]
    assert isinstance(second.failed[0].exception, DuplicateConnectorError)
    assert type(taken.get_connector("ambient")) is Other
    third = ConnectorRegistry()
    discover(third, modules=[plugin_module], plugins=())
    assert third.get_connector("ambient") is registry.get_connector("ambient")
    assert third.registrations()[0].origin is not None


def test_a_module_dropped_from_sys_modules_is_imported_anew_after_reset(
    registry: ConnectorRegistry, plugin_module: str
) -> None:
    discover(registry, modules=[plugin_module], plugins=())
    before = registry.get_connector("ambient")
    del sys.modules[plugin_module]
    ambient.reset()
    again = ConnectorRegistry()
    assert not discover(again, modules=[plugin_module], plugins=()).failed
    assert type(again.get_connector("ambient")) is not type(before)


def test_registrations_made_while_a_plugin_loads_are_collected_with_its_origin(
    registry: ConnectorRegistry,
) -> None:
    from connector_cli.sdk.registry import Origin

    origin = Origin("module", "by-hand")
    with ambient.activate(registry, origin) as made:
        ConnectorRegistry.register(Other())
    assert [row.origin for row in made] == [origin]
    assert registry.registrations()[0].origin == origin
    assert ConnectorRegistry.default() is ambient.root_registry()  # the block is over


def test_the_registry_itself_reads_no_ambient_state(registry: ConnectorRegistry) -> None:
    """Inside a plugin's load, an instance's own `register` is not tagged or collected:
    only the class-level call (the import-time API) goes through the shim."""
    from connector_cli.sdk.registry import Origin

    with ambient.activate(ConnectorRegistry(), Origin("module", "elsewhere")) as made:
        row = registry.register(Other())
    assert made == [] and row.origin is None and registry.registrations() == [row]
    explicit = ConnectorRegistry().register(Other(), origin=Origin("module", "m"))
    assert explicit.origin == Origin("module", "m")
    source = (Path(ambient.__file__).parent / "registry.py").read_text()
    assert "from connector_cli.sdk import ambient" not in source.split("class ClassLevel")[0]
