"""Connectors of another SDK (the Flyte SDK, flytekit) adopted into a registry of ours.

Both SDKs keep a process-wide registry that a plugin's import fills, and both servers
serve everything in it. `Adopter` holds, once for both adapters, how discovery maps a
plugin to those connectors: what its import registered (remembered, since a module is
imported once per process but may be loaded into several registries), an instance for a
connector class nobody registered, and one wrapper per foreign instance (so each keeps
its one event loop). The adapters (`connector_cli.adapters.*`) supply the SDK-specific
parts; this module imports neither SDK.
"""

from __future__ import annotations

import logging
import threading
import types
import typing
from typing import Any, Awaitable, Callable, ClassVar, Generic, Iterable, TypeVar

from flyteidl2.core.execution_pb2 import TaskExecution

from connector_cli.errors import RegistrationError
from connector_cli.sdk.connector import AsyncConnector

W = TypeVar("W", bound=AsyncConnector)
logger = logging.getLogger(__name__)


class Adopter(Generic[W]):
    """How discovery adopts one SDK's connectors.

    `registered()` lists the SDK's registry; `base` is its connector base class (or
    classes); `make_wrapper(inner)` makes our connector around one of theirs. `built_in`
    names packages whose connectors load along with the SDK itself (flytekit imports its
    own and every installed plugin's): a plugin is credited only with its own ones."""

    def __init__(self, registered: Callable[[], list[Any]], base: type | tuple[type, ...],
                 make_wrapper: Callable[[Any], W], built_in: tuple[str, ...] = ()) -> None:
        self.registered = registered
        self.base = base
        self.make_wrapper = make_wrapper
        self.built_in = built_in
        self._wrappers: dict[int, W] = {}
        self._imported: dict[str, list[Any]] = {}
        self._instances: dict[type, Any] = {}
        self._lock = threading.Lock()

    def wrap(self, inner: Any) -> W:
        """The one wrapper of a foreign connector instance."""
        with self._lock:
            found = self._wrappers.get(id(inner))
            if found is None or getattr(found, "inner", None) is not inner:
                found = self._wrappers[id(inner)] = self.make_wrapper(inner)
            return found

    def is_connector_class(self, target: Any) -> bool:
        """A class (or subscripted generic alias) subclassing the SDK's connector base."""
        cls = typing.get_origin(target) or target
        return isinstance(cls, type) and issubclass(cls, self.base)

    def adopt(self, module_name: str, target: Any, before: Iterable[int],
              add: Callable[[AsyncConnector], None]) -> bool:
        """`add` (register, for discovery) a wrapper of each connector a plugin provides:
        those its import registered in the SDK's registry (all of them, as the SDK's own
        server serves them) plus, for a connector class nobody registered, an instance.
        True when the target itself is taken care of (a connector class or instance of
        the SDK, or a module that registered connectors there)."""
        inners = self._from_import(module_name, set(before))
        if self.is_connector_class(target):
            inners += self._for_class(target, inners)
        elif isinstance(target, self.base) and target not in inners:
            inners.append(target)
        if not inners:
            return False
        for inner in inners:
            add(self.wrap(inner))
        return isinstance(target, (types.ModuleType, self.base)) or \
            self.is_connector_class(target)

    def _from_import(self, module_name: str, before: set[int]) -> list[Any]:
        """What importing `module_name` registered; for a module imported before discovery
        saw it, the registered connectors defined in it."""
        if module_name not in self._imported:
            new = [c for c in self.registered() if id(c) not in before]
            if self.built_in:
                new = [c for c in new if _defined_in(type(c), module_name)] or [
                    c for c in new if not any(_defined_in(type(c), p) for p in self.built_in)]
            if not new:
                new = [c for c in self.registered() if _defined_in(type(c), module_name)]
            self._imported[module_name] = new
        return list(self._imported[module_name])

    def _for_class(self, target: Any, known: list[Any]) -> list[Any]:
        """An instance for a connector class the plugin did not register itself."""
        cls = typing.get_origin(target) or target
        found = [c for c in self.registered() if type(c) is cls and c not in known]
        if found or any(type(c) is cls for c in known):
            return found
        abstract = getattr(cls, "__abstractmethods__", None)
        if abstract:
            missing = ", ".join(sorted(abstract))
            raise RegistrationError(f"{cls.__qualname__} does not implement {missing}")
        with self._lock:
            if cls not in self._instances:
                self._instances[cls] = cls()
            return [self._instances[cls]]


def _defined_in(cls: type, module_name: str) -> bool:
    module = cls.__module__
    return module == module_name or module.startswith(module_name + ".")


class Adopted(AsyncConnector):
    """One connector of another SDK served as one of ours: on a loop of its own (its
    SDK's server gives it the whole loop, so it may block it), handed the request's wire
    inputs (its SDK converts them), its phase UNDEFINED reported as QUEUED."""

    own_loop: ClassVar[bool] = True
    raw_inputs: ClassVar[bool] = True

    def __init__(self, inner: Any, task_type_name: str, task_type_version: int) -> None:
        self.inner = inner
        self.name = str(inner.name)  # type: ignore[misc]
        self.task_type_name = task_type_name  # type: ignore[misc]
        self.task_type_version = task_type_version  # type: ignore[misc]
        self._queued = UndefinedAsQueued(self.name)

    async def _converted(self, convert: Callable[[Any], Awaitable[Any]], result: Any,
                         failed: Callable[..., Any]) -> Any:
        """`await convert(result)`: the SDK's own conversion of what the connector's `get`
        returned. Outputs it cannot convert fail the task, since a retried GetTask could
        not fix them: a `failed(phase=FAILED, message=...)` saying why."""
        try:
            return await convert(result)
        except Exception as exc:  # noqa: BLE001 - a connector's outputs fail the task
            logger.error("%s returned a Resource that cannot be converted: %s", self.name, exc)
            return failed(
                phase=TaskExecution.FAILED,
                message=f"the connector's result cannot be converted to Flyte literals: {exc}",
            )


class UndefinedAsQueued:
    """Both SDKs let a connector report phase UNDEFINED (a job not started yet), which
    Flyte's backends treat as a failure: such a resource is reported as QUEUED, with a
    warning logged once per connector."""

    __slots__ = ("name", "logged")

    def __init__(self, name: str) -> None:
        self.name = name
        self.logged = False

    def __call__(self, resource: Any) -> Any:
        """`resource` (a v2 `Resource` message) with UNDEFINED replaced by QUEUED."""
        if resource.phase == TaskExecution.UNDEFINED:
            if not self.logged:
                self.logged = True
                logger.warning(
                    "connector %r returned phase UNDEFINED (job not started yet?); reporting "
                    "it as QUEUED, because Flyte fails a task on UNDEFINED (logged once)",
                    self.name,
                )
            resource.phase = TaskExecution.QUEUED
        return resource
