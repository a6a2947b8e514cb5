"""Discovery from real installed distributions (entry points) and from --modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector_cli.discovery import (
    IMPORT_ERROR,
    NO_CONNECTORS,
    NOT_FOUND,
    NOT_INSTALLED,
    REGISTRATION_ERROR,
    discover,
    inventory,
)
from connector_cli.sdk.registry import ConnectorRegistry

GOOD = ["good-module", "good-class", "good-instance"]
BROKEN = [
    "broken-raises",
    "broken-dependency",
    "broken-duplicate",
    "broken-not-connector",
    "broken-no-module",
    "broken-empty",
    "broken-abstract",
]


def test_good_plugins_load_from_entry_points(registry: ConnectorRegistry, plugin_path: Path) -> None:
    report = discover(registry, plugins=GOOD)
    assert not report.failed
    assert sorted(o.name for o in report.loaded) == sorted(GOOD)
    assert {o.distribution for o in report.loaded} == {"fc-good"}
    assert {o.version for o in report.loaded} == {"1.2.3"}
    assert registry.get_connector("good", 1).name == "Good"
    assert type(registry.get_connector("by-class")).__name__ == "ClassConnector"
    assert registry.get_connector("by-instance").name == "Instance"
    origins = {r.category: r.origin for r in registry.registrations()}
    assert origins[("good", 0)].target == "fc_good.registers"
    assert origins[("by-class", 0)].name == "good-class"


def test_broken_plugins_are_reported_and_the_rest_load(registry: ConnectorRegistry, plugin_path: Path) -> None:
    report = discover(registry, plugins=GOOD + BROKEN)
    assert sorted(o.name for o in report.loaded) == sorted(GOOD)
    failures = {f.origin.name: f for f in report.failed}
    assert sorted(failures) == sorted(BROKEN)
    assert all(f.origin.distribution == "fc-broken" and f.origin.version == "0.0.1" for f in failures.values())

    raises = failures["broken-raises"]
    assert raises.reason == IMPORT_ERROR
    assert raises.error == "importing 'fc_broken.raises' raised RuntimeError: database URL is not configured"
    assert isinstance(raises.exception, RuntimeError)

    dependency = failures["broken-dependency"]
    assert dependency.reason == IMPORT_ERROR
    assert "importing 'fc_broken.dependency' failed: No module named 'fc_missing_sdk_package'" == dependency.error

    assert failures["broken-no-module"].reason == NOT_FOUND
    assert failures["broken-no-module"].error == "module 'fc_broken.does_not_exist' not found"
    assert failures["broken-duplicate"].reason == REGISTRATION_ERROR
    assert "task type 'dup' v0 is already served by connector 'First'" in failures["broken-duplicate"].error
    assert failures["broken-not-connector"].reason == REGISTRATION_ERROR
    assert "points at a dict, not a connector" in failures["broken-not-connector"].error
    assert failures["broken-empty"].reason == NO_CONNECTORS
    assert failures["broken-abstract"].error == "Half does not implement delete, get"

    # half-done registrations were rolled back
    assert sorted(registry.categories()) == [("by-class", 0), ("by-instance", 0), ("good", 0), ("good", 1)]
    # entry-point plugins that are broken are not "missing" names (those are usage errors)
    assert report.missing == []


def test_selection_by_distribution_name_and_none(registry: ConnectorRegistry, plugin_path: Path) -> None:
    report = discover(registry, plugins=["fc_good"])
    assert sorted(o.name for o in report.loaded) == sorted(GOOD)
    empty = ConnectorRegistry()
    report = discover(empty, plugins=())
    assert not report.loaded and not report.failed and len(empty) == 0


def test_unknown_plugin_name_is_missing(registry: ConnectorRegistry, plugin_path: Path) -> None:
    report = discover(registry, plugins=["good-module", "no-such-plugin"])
    assert [f.reason for f in report.failed] == [NOT_INSTALLED]
    assert report.missing[0].error == "no installed plugin named 'no-such-plugin' in entry-point group 'flyte.connectors'"
    assert len(registry) == 2


def test_two_registries_each_get_the_plugins(plugin_path: Path) -> None:
    first, second = ConnectorRegistry(), ConnectorRegistry()
    discover(first, plugins=["good-module"])
    discover(second, plugins=["good-module"])
    assert first.categories() == second.categories() == [("good", 0), ("good", 1)]
    assert first.get_connector("good") is second.get_connector("good")


def test_modules_load_modules_classes_and_report_failures(registry: ConnectorRegistry, plugin_path: Path) -> None:
    report = discover(
        registry,
        plugins=(),
        modules=["fc_good.registers", "fc_good.classes:ClassConnector", "no_such_module", "fc_good.nope",
                 "fc_broken.dependency", "fc_good.classes:Missing"],
    )
    assert [o.target for o in report.loaded] == ["fc_good.registers", "fc_good.classes:ClassConnector"]
    failures = {f.origin.target: f for f in report.failed}
    assert failures["no_such_module"].reason == NOT_FOUND
    assert failures["fc_good.nope"].reason == NOT_FOUND
    assert failures["fc_broken.dependency"].reason == IMPORT_ERROR
    assert "has no attribute 'Missing'" in failures["fc_good.classes:Missing"].error
    assert sorted(f.origin.target for f in report.missing) == [
        "fc_good.classes:Missing", "fc_good.nope", "no_such_module"]
    assert registry.get_connector("by-class").name == "ClassConnector"


def test_inventory_groups_by_connector_and_source(registry: ConnectorRegistry, plugin_path: Path) -> None:
    report = discover(registry, plugins=["good-module", "broken-raises"])
    data = inventory(registry, report)
    assert data["connectors"] == [
        {
            "name": "Good",
            "task_types": [{"name": "good", "version": 0}, {"name": "good", "version": 1}],
            "source": {
                "kind": "entry-point",
                "name": "good-module",
                "target": "fc_good.registers",
                "distribution": "fc-good",
                "version": "1.2.3",
                "description": "fc-good 1.2.3",
            },
        }
    ]
    assert [f["plugin"] for f in data["failed"]] == ["broken-raises"]
    assert data["failed"][0]["reason"] == IMPORT_ERROR


def test_a_module_imported_before_discovery_is_still_found(registry: ConnectorRegistry, plugin_path: Path) -> None:
    import importlib

    importlib.import_module("fc_good.classes")
    report = discover(registry, plugins=(), modules=["fc_good.classes:instance"])
    assert not report.failed
    assert registry.get_connector("by-instance").name == "Instance"


@pytest.mark.parametrize("spec", ["fc_good.registers", "fc_good.registers:GoodV0"])
def test_entry_point_class_already_registered_by_its_module_is_not_a_duplicate(
    registry: ConnectorRegistry, plugin_path: Path, spec: str
) -> None:
    report = discover(registry, plugins=(), modules=[spec])
    assert not report.failed
    assert registry.categories() == [("good", 0), ("good", 1)]
