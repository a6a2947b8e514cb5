"""`discovery.load_plugins`: the one policy behind `list`, `serve`, `test` and the test kit."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from connector_cli.config import DiscoveryConfig
from connector_cli.discovery import PluginFailure, load_plugins
from connector_cli.errors import PluginLoadError, PluginNotFound
from connector_cli.sdk.registry import ConnectorRegistry


def test_a_name_that_does_not_exist_is_a_usage_error_whatever_the_policy(
    registry: ConnectorRegistry, plugin_path: Path
) -> None:
    for refuse in ("missing", "modules", "any"):
        with pytest.raises(PluginNotFound, match="module 'no_such_module' not found"):
            load_plugins(registry, DiscoveryConfig(modules=("no_such_module",), plugins=()),
                         refuse=refuse)  # type: ignore[arg-type]
    with pytest.raises(PluginNotFound, match="no installed plugin named 'nope'"):
        load_plugins(registry, DiscoveryConfig(plugins=("nope",)))


def test_broken_plugins_are_reported_or_refused_by_the_policy(
    registry: ConnectorRegistry, plugin_path: Path
) -> None:
    config = DiscoveryConfig(modules=("fc_broken.raises",), plugins=("good-module",))
    seen: list[PluginFailure] = []
    report = load_plugins(registry, config, on_failure=seen.append)
    assert [f.origin.target for f in report.failed] == ["fc_broken.raises"] == [
        f.origin.target for f in seen]
    assert registry.get_connector("good").name
    with pytest.raises(PluginLoadError, match=r"importing 'fc_broken.raises' raised .*; fix or "
                       r"drop the --modules entry$"):
        load_plugins(ConnectorRegistry(), config, refuse="modules")
    entry_point = DiscoveryConfig(plugins=("good-module", "broken-raises"))
    assert load_plugins(ConnectorRegistry(), entry_point, refuse="modules").failed
    with pytest.raises(PluginLoadError, match=r"^broken-raises: "):
        load_plugins(ConnectorRegistry(), entry_point, refuse="any")


def test_import_from_makes_a_directory_importable_for_modules(
    registry: ConnectorRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "local_conn_mod.py").write_text(
        "from connector_cli import AsyncConnector, ConnectorRegistry\n"
        "class Local(AsyncConnector):\n"
        "    task_type_name = 'local-mod'\n"
        "    async def create(self, task_template, output_prefix, inputs=None, **kw): ...\n"
        "    async def get(self, resource_meta, **kw): ...\n"
        "    async def delete(self, resource_meta, **kw): ...\n"
        "ConnectorRegistry.register(Local())\n"
    )
    monkeypatch.delitem(sys.modules, "local_conn_mod", raising=False)
    config = DiscoveryConfig(modules=("local_conn_mod",), plugins=())
    with pytest.raises(PluginNotFound):
        load_plugins(ConnectorRegistry(), config)
    load_plugins(registry, config, import_from=str(tmp_path))
    assert registry.get_connector("local-mod").name == "Local"
    monkeypatch.delitem(sys.modules, "local_conn_mod", raising=False)
