"""`ConnectorRegistry`: which connector serves which (task type, version).

The registry is an object, so every test, server and CLI run can hold its own. Class-level
calls (`ConnectorRegistry.register(MyConnector())`, as plugin modules write at import time)
go to the *current default* registry, which discovery points at the registry it is loading
into. Everything the registry reports (connector metadata, ListConnectors) is derived from
its one table of registrations.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import difflib
import functools
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from connector_cli.errors import ConnectorNotFound, DuplicateConnectorError, RegistrationError
from connector_cli.sdk.resource_meta import check_meta_class
from connector_cli.sdk.connector import AsyncConnector

if TYPE_CHECKING:
    from flyteidl2.connector.connector_pb2 import Connector

Category = tuple[str, int]


@dataclasses.dataclass(frozen=True)
class Origin:
    """Where a registration came from: an entry point, a `--modules` module, or code."""

    kind: str
    name: str
    target: str = ""
    distribution: Optional[str] = None
    version: Optional[str] = None

    def describe(self) -> str:
        """A short human label, e.g. 'flyte-connector-shell 0.1.0' or 'module my.conn'."""
        if self.distribution:
            return f"{self.distribution} {self.version or ''}".strip()
        return f"{self.kind} {self.target or self.name}"


@dataclasses.dataclass(frozen=True)
class Registration:
    """One row of the registry: a connector serving one task category."""

    category: Category
    connector: AsyncConnector
    origin: Optional[Origin] = None


class _DefaultOrSelf:
    """Method descriptor: on an instance it binds to it, on the class to the default registry."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __get__(self, obj: Optional[ConnectorRegistry], owner: type[ConnectorRegistry]) -> Any:
        return self.fn.__get__(obj if obj is not None else owner.default(), owner)


class ConnectorRegistry:
    """Maps (task type, version) to the connector serving it, with validation on register."""

    def __init__(self) -> None:
        self._rows: dict[Category, Registration] = {}
        self._metadata_cache: Optional[list[Connector]] = None

    @classmethod
    def default(cls) -> ConnectorRegistry:
        """The registry class-level calls go to (the process-wide one unless activated)."""
        return _current.get()

    @contextlib.contextmanager
    def activate(self, origin: Optional[Origin] = None) -> Iterator[list[Registration]]:
        """Make this the default registry for the block and collect what gets registered.

        Discovery wraps each plugin import in this, so a plugin's import-time
        `ConnectorRegistry.register(...)` lands here, tagged with `origin`.
        """
        made: list[Registration] = []
        token = _current.set(self)
        loading = _loading.set((origin, made))
        try:
            yield made
        finally:
            _loading.reset(loading)
            _current.reset(token)

    @_DefaultOrSelf
    def register(self, connector: AsyncConnector, override: bool = False) -> None:
        """Serve `connector.task_type_name` v`task_type_version` with `connector`.

        Raises `RegistrationError` for something that is not a valid connector and
        `DuplicateConnectorError` when the category is taken and `override` is False.
        """
        category = _validate(connector)
        existing = self._rows.get(category)
        if existing is not None and not override:
            if existing.connector is connector:
                _record(existing)
                return
            raise DuplicateConnectorError(
                f"task type {category[0]!r} v{category[1]} is already served by "
                f"{_label(existing)}; refusing {_label(Registration(category, connector))}. "
                "Give one of them another task_type_version, or register with override=True "
                "to replace it."
            )
        origin, _ = _loading.get() or (None, None)
        row = Registration(category, connector, origin)
        self._rows[category] = row
        self._metadata_cache = None
        _record(row)

    @_DefaultOrSelf
    def get_connector(self, task_type_name: str, task_type_version: int = 0) -> AsyncConnector:
        """The connector serving this task type and version, or `ConnectorNotFound`."""
        row = self._rows.get((task_type_name, task_type_version))
        if row is None:
            raise ConnectorNotFound(self._not_found_message(task_type_name, task_type_version))
        return row.connector

    @_DefaultOrSelf
    def get_connector_metadata(self, name: str) -> Connector:
        """The `Connector` proto (name and task categories) of the connector called `name`."""
        for connector in self.list_connectors():
            if connector.name == name:
                return connector
        names = sorted({row.connector.name for row in self._rows.values()})
        hint = _closest(name, names)
        raise ConnectorNotFound(
            f"no connector named {name!r}{hint}; registered: {', '.join(names) or 'none'}"
        )

    @_DefaultOrSelf
    def list_connectors(self) -> list[Connector]:
        """One `Connector` proto per connector name, in registration order."""
        if self._metadata_cache is None:
            from flyteidl2.connector.connector_pb2 import Connector, TaskCategory

            grouped: dict[str, list[Category]] = {}
            for category, row in self._rows.items():
                grouped.setdefault(row.connector.name, []).append(category)
            self._metadata_cache = [
                Connector(
                    name=name,
                    supported_task_categories=[TaskCategory(name=t, version=v) for t, v in cats],
                )
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

    def __len__(self) -> int:
        return len(self._rows)

    def _not_found_message(self, task_type_name: str, task_type_version: int) -> str:
        served = [f"{t} v{v}" for t, v in self._rows]
        same_type = [v for t, v in self._rows if t == task_type_name]
        if same_type:
            hint = f" (served versions of {task_type_name!r}: {', '.join(map(str, same_type))})"
        else:
            hint = _closest(task_type_name, [t for t, _ in self._rows])
        return (
            f"no connector for task type {task_type_name!r} v{task_type_version}{hint}; "
            f"served: {', '.join(served) or 'none (no plugins loaded)'}"
        )


def _record(row: Registration) -> None:
    loading = _loading.get()
    if loading is not None:
        loading[1].append(row)


def _closest(name: str, candidates: list[str]) -> str:
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


_ROOT = ConnectorRegistry()
_current: contextvars.ContextVar[ConnectorRegistry] = contextvars.ContextVar(
    "connector_registry", default=_ROOT
)


def root_registry() -> ConnectorRegistry:
    """The process-wide registry that class-level calls use outside `activate`."""
    return _ROOT
_loading: contextvars.ContextVar[Optional[tuple[Optional[Origin], list[Registration]]]] = (
    contextvars.ContextVar("connector_registry_loading", default=None)
)
