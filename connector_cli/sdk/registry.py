"""`ConnectorRegistry`: which connector serves which (task type, version).

The registry is an object, so every test, server and CLI run can hold its own, and it
reads no global state: whoever registers says where the connector came from (`origin`).
Class-level calls (`ConnectorRegistry.register(MyConnector())`, as older plugin modules
write at import time) are a wrapper around it, `connector_cli.sdk.ambient`, reached only
when a method is looked up on the class. Everything the registry reports (connector
metadata, ListConnectors) is derived from its one table of registrations.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterator, Optional

from connector_cli.errors import (
    ConnectorNotFound,
    DuplicateConnectorError,
    RegistrationError,
    UsageError,
)
from connector_cli.record import Record
from connector_cli.sdk.connector import AsyncConnector
from connector_cli.sdk.resource_meta import check_meta_class

if TYPE_CHECKING:
    from flyteidl2.connector.connector_pb2 import Connector

Category = tuple[str, int]

# Longest task type or connector name a caller may send. Real names are identifiers of a
# few dozen characters; a longer one is refused before any work on it (a fuzzy match over
# megabytes of caller text froze the daemon).
MAX_NAME = 256
_MATCH_LIMIT = 64  # names longer than this get no "did you mean" (difflib is quadratic)


class Origin(Record):
    """Where a registration came from: an entry point, a `--modules` module, or code."""

    __slots__ = ("kind", "name", "target", "distribution", "version")
    kind: str
    name: str
    target: str
    distribution: Optional[str]
    version: Optional[str]

    def __init__(self, kind: str, name: str, target: str = "",
                 distribution: Optional[str] = None, version: Optional[str] = None) -> None:
        self._set(kind=kind, name=name, target=target, distribution=distribution,
                  version=version)

    def describe(self) -> str:
        """A short human label, e.g. 'flyte-connector-shell 0.1.0' or 'module my.conn'."""
        if self.distribution:
            return f"{self.distribution} {self.version or ''}".strip()
        return f"{self.kind} {self.target or self.name}"


class Registration(Record):
    """One row of the registry: a connector serving one task category."""

    __slots__ = ("category", "connector", "origin")
    category: Category
    connector: AsyncConnector
    origin: Optional[Origin]

    def __init__(self, category: Category, connector: AsyncConnector,
                 origin: Optional[Origin] = None) -> None:
        self._set(category=category, connector=connector, origin=origin)


class ClassLevel:
    """A registry method that, looked up on the class rather than an instance, runs on the
    default registry through `connector_cli.sdk.ambient` (the import-time API)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def __get__(self, obj: Optional[ConnectorRegistry], owner: type) -> Any:
        if obj is not None:
            return self.fn.__get__(obj, owner)
        from connector_cli.sdk import ambient

        return ambient.class_level(self.fn.__name__)


class ConnectorRegistry:
    """Maps (task type, version) to the connector serving it, with validation on register."""

    def __init__(self) -> None:
        self._rows: dict[Category, Registration] = {}
        self._metadata_cache: Optional[list[Connector]] = None
        self.generation = 0  # bumped on every change: callers may cache lookups per value

    @classmethod
    def default(cls) -> ConnectorRegistry:
        """The registry class-level calls go to (the process-wide one unless activated)."""
        from connector_cli.sdk import ambient

        return ambient.default_registry()

    @contextlib.contextmanager
    def activate(self, origin: Optional[Origin] = None) -> Iterator[list[Registration]]:
        """Make this the default registry for the block and collect what gets registered.

        Discovery wraps each plugin import in this, so a plugin's import-time
        `ConnectorRegistry.register(...)` lands here, tagged with `origin`.
        """
        from connector_cli.sdk import ambient

        with ambient.activate(self, origin) as made:
            yield made

    @ClassLevel
    def register(self, connector: AsyncConnector, override: bool = False,
                 origin: Optional[Origin] = None) -> Registration:
        """Serve `connector.task_type_name` v`task_type_version` with `connector`, noting
        where it came from; the registry row. Registering the same instance again is a
        no-op that returns its row.

        Raises `RegistrationError` for something that is not a valid connector and
        `DuplicateConnectorError` when the category is taken and `override` is False.
        """
        category = _validate(connector)
        existing = self._rows.get(category)
        if existing is not None and not override:
            if existing.connector is connector:
                return existing
            raise DuplicateConnectorError(
                f"task type {category[0]!r} v{category[1]} is already served by "
                f"{_label(existing)}; refusing {_label(Registration(category, connector))}. "
                "Give one of them another task_type_version, or register with override=True "
                "to replace it."
            )
        row = Registration(category, connector, origin)
        self._rows[category] = row
        self._metadata_cache = None
        self.generation += 1
        return row

    @ClassLevel
    def get_connector(self, task_type_name: str, task_type_version: int = 0) -> AsyncConnector:
        """The connector serving this task type and version, or `ConnectorNotFound`."""
        row = self._rows.get((task_type_name, task_type_version))
        if row is None:
            check_name(task_type_name, "task type")
            raise ConnectorNotFound(self._not_found_message(task_type_name, task_type_version))
        return row.connector

    @ClassLevel
    def get_connector_metadata(self, name: str) -> Connector:
        """The `Connector` proto (name and task categories) of the connector called `name`."""
        check_name(name, "connector")
        for connector in self.list_connectors():
            if connector.name == name:
                return connector
        names = sorted({row.connector.name for row in self._rows.values()})
        hint = _closest(name, names)
        raise ConnectorNotFound(
            f"no connector named {name!r}{hint}; registered: {', '.join(names) or 'none'}"
        )

    @ClassLevel
    def list_connectors(self) -> list[Connector]:
        """One `Connector` proto per connector name, in registration order."""
        if self._metadata_cache is None:
            from flyteidl2.connector.connector_pb2 import Connector

            grouped: dict[str, list[Category]] = {}
            for category, row in self._rows.items():
                grouped.setdefault(row.connector.name, []).append(category)
            self._metadata_cache = [
                Connector(name=name, supported_task_categories=[category_message(c) for c in cats])
                for name, cats in grouped.items()
            ]
        return list(self._metadata_cache)

    def registrations(self) -> list[Registration]:
        """Every registration, in registration order."""
        return list(self._rows.values())

    def categories(self) -> list[Category]:
        """Every (task type, version) served."""
        return list(self._rows)

    def snapshot(self) -> dict[Category, Registration]:
        """A copy of the table, for `restore` to roll back a plugin that failed half-way."""
        return dict(self._rows)

    def restore(self, snapshot: dict[Category, Registration]) -> None:
        """Return the table to a `snapshot`."""
        self._rows = dict(snapshot)
        self._metadata_cache = None
        self.generation += 1

    def __len__(self) -> int:
        return len(self._rows)

    def _not_found_message(self, task_type_name: str, task_type_version: int) -> str:
        return not_served_message((task_type_name, task_type_version), list(self._rows))


def not_served_message(category: Category, served: list[Category], server: str = "") -> str:
    """'no connector for task type ...' with the closest name or the served versions, and
    what is served; `server` names a remote daemon ('the daemon at HOST:PORT')."""
    name, version = category
    same_type = [str(v) for t, v in served if t == name]
    if same_type:
        hint = f" (served versions of {name!r}: {', '.join(same_type)})"
    else:
        hint = _closest(name, [t for t, _ in served])
    listing = ", ".join(f"{t} v{v}" for t, v in served)
    where = f"{server} serves" if server else "served"
    nothing = "none" if server else "none (no plugins loaded)"
    return f"no connector for task type {name!r} v{version}{hint}; {where}: {listing or nothing}"


def check_name(name: str, what: str) -> None:
    """Refuse a caller's name longer than `MAX_NAME` (`UsageError`, the name not repeated)."""
    if len(name) > MAX_NAME:
        raise UsageError(
            f"the {what} name is {len(name)} characters long; names are at most {MAX_NAME}"
        )


def category_message(category: Category) -> Any:
    """A (task type, version) pair as the `flyteidl2.connector.TaskCategory` message."""
    from flyteidl2.connector.connector_pb2 import TaskCategory

    return TaskCategory(name=category[0], version=category[1])


def _closest(name: str, candidates: list[str]) -> str:
    """' (did you mean ...?)' for a short name: bounded work whatever the caller sent."""
    if len(name) > _MATCH_LIMIT:
        return ""
    import difflib

    candidates = [c for c in candidates if len(c) <= 4 * _MATCH_LIMIT]
    match = difflib.get_close_matches(name, candidates, n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _label(row: Registration) -> str:
    where = f" from {row.origin.describe()}" if row.origin else ""
    return f"connector {row.connector.name!r} ({type(row.connector).__qualname__}{where})"


def _validate(connector: Any) -> Category:
    """Check a would-be connector and return its category; the error names it and the fix."""
    if isinstance(connector, type) and issubclass(connector, AsyncConnector):
        raise RegistrationError(
            f"{connector.__qualname__} is a class; register an instance: "
            f"ConnectorRegistry.register({connector.__name__}())"
        )
    if not isinstance(connector, AsyncConnector):
        raise RegistrationError(
            f"{connector!r} is not a connector; register an instance of an "
            "AsyncConnector subclass"
        )
    cls = type(connector).__qualname__
    name, version = connector.task_type_name, connector.task_type_version
    if not isinstance(name, str) or not name:
        raise RegistrationError(f"{cls} has no task_type_name; set the class attribute")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise RegistrationError(
            f"{cls}.task_type_version must be a non-negative int, got {version!r}"
        )
    if not isinstance(connector.name, str) or not connector.name:
        raise RegistrationError(f"{cls}.name must be a non-empty string")
    if not isinstance(connector.sign_resource_meta, bool):
        raise RegistrationError(
            f"{cls}.sign_resource_meta must be True or False, got {connector.sign_resource_meta!r}"
        )
    try:
        check_meta_class(connector.metadata_type)
    except TypeError as exc:
        raise RegistrationError(f"{cls}.metadata_type is invalid: {exc}") from None
    return (name, version)
