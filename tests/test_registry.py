"""Every rule of ConnectorRegistry."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from flyteidl2.connector.connector_pb2 import Connector, TaskCategory
from flyteidl2.core.execution_pb2 import TaskExecution

from connector_cli import (
    AsyncConnector,
    ConnectorNotFound,
    ConnectorRegistry,
    DuplicateConnectorError,
    RegistrationError,
    Resource,
    ResourceMeta,
)


class Base(AsyncConnector):
    async def create(self, *a: Any, **kw: Any) -> ResourceMeta:
        return ResourceMeta()

    async def get(self, resource_meta: ResourceMeta, **kw: Any) -> Resource:
        return Resource(phase=TaskExecution.SUCCEEDED)

    async def delete(self, resource_meta: ResourceMeta, **kw: Any) -> None:
        return None


class Bigquery(Base):
    name = "BigQuery"
    task_type_name = "bigquery"


class BigqueryV2(Bigquery):
    task_type_version = 2


class OtherBigquery(Base):
    name = "Other"
    task_type_name = "bigquery"


class Spark(Base):
    task_type_name = "spark"


def categories(connector: Connector) -> list[tuple[str, int]]:
    return [(c.name, c.version) for c in connector.supported_task_categories]


def test_register_and_look_up(registry: ConnectorRegistry) -> None:
    bq = Bigquery()
    registry.register(bq)
    assert registry.get_connector("bigquery") is bq
    assert registry.get_connector("bigquery", 0) is bq
    assert len(registry) == 1


def test_duplicate_names_both_connectors(registry: ConnectorRegistry) -> None:
    registry.register(Bigquery())
    with pytest.raises(DuplicateConnectorError) as info:
        registry.register(OtherBigquery())
    message = str(info.value)
    assert "'BigQuery' (Bigquery)" in message and "'Other' (OtherBigquery)" in message
    assert "override=True" in message
    assert isinstance(registry.get_connector("bigquery"), Bigquery)


def test_registering_the_same_instance_twice_is_harmless(registry: ConnectorRegistry) -> None:
    bq = Bigquery()
    registry.register(bq)
    registry.register(bq)
    assert categories(registry.get_connector_metadata("BigQuery")) == [("bigquery", 0)]


def test_override_replaces_without_duplicating_the_category(registry: ConnectorRegistry) -> None:
    registry.register(Bigquery())
    replacement = Bigquery()
    registry.register(replacement, override=True)
    registry.register(replacement, override=True)
    assert registry.get_connector("bigquery") is replacement
    assert categories(registry.get_connector_metadata("BigQuery")) == [("bigquery", 0)]
    assert len(registry.list_connectors()) == 1


def test_override_by_another_name_moves_the_category(registry: ConnectorRegistry) -> None:
    registry.register(Bigquery())
    registry.register(OtherBigquery(), override=True)
    assert [c.name for c in registry.list_connectors()] == ["Other"]
    with pytest.raises(ConnectorNotFound):
        registry.get_connector_metadata("BigQuery")


def test_one_name_serves_several_categories(registry: ConnectorRegistry) -> None:
    registry.register(Bigquery())
    registry.register(BigqueryV2())
    registry.register(Spark())
    assert registry.list_connectors() == [
        Connector(
            name="BigQuery",
            supported_task_categories=[
                TaskCategory(name="bigquery", version=0),
                TaskCategory(name="bigquery", version=2),
            ],
        ),
        Connector(name="Spark", supported_task_categories=[TaskCategory(name="spark", version=0)]),
    ]
    assert isinstance(registry.get_connector("bigquery", 2), BigqueryV2)


def test_unknown_task_type_is_connector_not_found_with_hints(registry: ConnectorRegistry) -> None:
    registry.register(Bigquery())
    registry.register(BigqueryV2())
    with pytest.raises(ConnectorNotFound) as info:
        registry.get_connector("bigqeury")
    assert type(info.value) is ConnectorNotFound and not isinstance(info.value, ValueError)
    assert "did you mean 'bigquery'" in str(info.value)
    assert "served: bigquery v0, bigquery v2" in str(info.value)
    with pytest.raises(ConnectorNotFound, match="served versions of 'bigquery': 0, 2"):
        registry.get_connector("bigquery", 1)
    with pytest.raises(ConnectorNotFound, match="no connector named 'Bigquery'.*did you mean 'BigQuery'"):
        registry.get_connector_metadata("Bigquery")


def test_empty_registry_says_no_plugins(registry: ConnectorRegistry) -> None:
    with pytest.raises(ConnectorNotFound, match="none \\(no plugins loaded\\)"):
        registry.get_connector("anything")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: object(), "is not a connector"),
        (lambda: "bigquery", "'bigquery' is not a connector"),
        (lambda: Bigquery, "Bigquery is a class; register an instance: ConnectorRegistry.register\\(Bigquery\\(\\)\\)"),
        (lambda: type("NoType", (Base,), {})(), "NoType has no task_type_name"),
        (lambda: type("BadVersion", (Base,), {"task_type_name": "x", "task_type_version": "1"})(),
         "BadVersion.task_type_version must be a non-negative int, got '1'"),
        (lambda: type("Negative", (Base,), {"task_type_name": "x", "task_type_version": -1})(),
         "non-negative"),
        (lambda: type("BadMeta", (Base,), {"task_type_name": "x", "metadata_type": dict})(),
         "BadMeta.metadata_type is invalid: .*not a ResourceMeta subclass"),
    ],
)
def test_invalid_connectors_are_refused_by_name(registry: ConnectorRegistry, make: Any, message: str) -> None:
    with pytest.raises(RegistrationError, match=message):
        registry.register(make())
    assert len(registry) == 0


def test_undecorated_metadata_type_is_refused(registry: ConnectorRegistry) -> None:
    class Meta(ResourceMeta):
        job: str

    class Conn(Base):
        task_type_name = "x"
        metadata_type = Meta

    with pytest.raises(RegistrationError, match="not decorated with @dataclass"):
        registry.register(Conn())

    @dataclasses.dataclass
    class Good(ResourceMeta):
        job: str

    Conn.metadata_type = Good
    registry.register(Conn())


def test_class_level_calls_use_the_default_registry(registry: ConnectorRegistry) -> None:
    with registry.activate():
        assert ConnectorRegistry.default() is registry
        ConnectorRegistry.register(Spark())
        assert isinstance(ConnectorRegistry.get_connector("spark"), Spark)
        assert [c.name for c in ConnectorRegistry.list_connectors()] == ["Spark"]
        assert ConnectorRegistry.get_connector_metadata("Spark").name == "Spark"
    assert ConnectorRegistry.default() is not registry
    assert isinstance(registry.get_connector("spark"), Spark)


def test_snapshot_and_restore_roll_back(registry: ConnectorRegistry) -> None:
    registry.register(Bigquery())
    snap = registry.snapshot()
    registry.register(Spark())
    registry.register(OtherBigquery(), override=True)
    registry.restore(snap)
    assert [c.name for c in registry.list_connectors()] == ["BigQuery"]
    assert registry.categories() == [("bigquery", 0)]
