"""Load connectors from installed plugins (entry points) and `--modules`, each in isolation.

An entry point in the `flyte.connectors` group, or a `--modules` name (`pkg.mod` or
`pkg.mod:Attr`), may point at a module that registers connectors on import, at an
`AsyncConnector` subclass, or at an instance. A plugin that fails is recorded with where it
came from and one line saying why; whatever it registered before failing is rolled back,
and the other plugins load regardless.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Callable, Collection, Literal, Optional

from connector_cli import foreign
from connector_cli.config import DiscoveryConfig
from connector_cli.errors import PluginLoadError, PluginNotFound, RegistrationError
from connector_cli.record import Record
from connector_cli.sdk.ambient import import_plugin
from connector_cli.sdk.connector import AsyncConnector
from connector_cli.sdk.registry import ConnectorRegistry, Origin, Registration

ENTRY_POINT_GROUP = "flyte.connectors"

NOT_FOUND = "not-found"
NOT_INSTALLED = "not-installed"
IMPORT_ERROR = "import-error"
REGISTRATION_ERROR = "registration-error"
NO_CONNECTORS = "no-connectors"
NEEDS_FLYTE_SDK = "needs-flyte-sdk"
NEEDS_FLYTEKIT = "needs-flytekit"


class PluginFailure(Record):
    """A plugin that did not load: where it came from, what kind of failure, one line why
    (and the exception, which takes no part in equality or repr)."""

    __slots__ = ("origin", "reason", "error", "exception")
    _hidden = frozenset({"exception"})
    origin: Origin
    reason: str
    error: str
    exception: Optional[BaseException]

    def __init__(self, origin: Origin, reason: str, error: str,
                 exception: Optional[BaseException] = None) -> None:
        self._set(origin=origin, reason=reason, error=error, exception=exception)

    def line(self) -> str:
        """One line naming the plugin (a module's error already names the module)."""
        return self.error if self.origin.kind == "module" else f"{self.origin.name}: {self.error}"


class DiscoveryReport:
    """What discovery loaded (as registrations, each tagged with its origin) and what failed."""

    __slots__ = ("loaded", "failed")

    def __init__(self, loaded: Optional[list[Origin]] = None,
                 failed: Optional[list[PluginFailure]] = None) -> None:
        self.loaded: list[Origin] = loaded if loaded is not None else []
        self.failed: list[PluginFailure] = failed if failed is not None else []

    def __repr__(self) -> str:
        return f"DiscoveryReport(loaded={self.loaded!r}, failed={self.failed!r})"

    @property
    def modules_loaded(self) -> int:
        """How many distinct plugin modules loaded: an entry point and a `--modules` entry
        naming the same module are one plugin."""
        return len({(o.target or o.name).partition(":")[0].strip() for o in self.loaded})

    @property
    def missing(self) -> list[PluginFailure]:
        """Names the user asked for that do not exist: a `--modules` module that is not
        there, or a `--plugins` name that is not installed. A usage error, not a broken
        plugin."""
        return [
            f
            for f in self.failed
            if f.reason == NOT_INSTALLED or (f.reason == NOT_FOUND and f.origin.kind == "module")
        ]


def discover(
    registry: ConnectorRegistry,
    modules: Collection[str] = (),
    plugins: Optional[Collection[str]] = None,
    group: str = ENTRY_POINT_GROUP,
) -> DiscoveryReport:
    """Load entry-point plugins (all when `plugins` is None, none when empty) and `modules`.

    `plugins` selects entry points by entry-point name or distribution name.
    """
    report = DiscoveryReport()
    if plugins is None or plugins:
        _load_entry_points(registry, report, group, plugins)
    for spec in modules:
        module_name, _, attr = spec.partition(":")
        origin = Origin("module", module_name, spec)
        _load_isolated(registry, report, origin, module_name, attr)
    if plugins is None or "flytekit" in plugins:
        _flytekit_built_ins(registry, report)
    return report


def _flytekit_built_ins(registry: ConnectorRegistry, report: DiscoveryReport) -> None:
    """flytekit's own connectors (sensor, webhook), which `pyflyte serve connector` always
    serves: loaded once a flytekit connector is, as the plugin named `flytekit`."""
    if not any(getattr(row.connector, "sdk", "") == "flytekit"
               for row in registry.registrations()):
        return
    import importlib_metadata

    version = importlib_metadata.version("flytekit")
    for module_name in foreign.FLYTEKIT_BUILT_INS:
        origin = Origin("entry-point", "flytekit", module_name, "flytekit", version)
        _load_isolated(registry, report, origin, module_name, "", optional=True)


Refuse = Literal["missing", "modules", "any"]


def load_plugins(
    registry: ConnectorRegistry,
    config: DiscoveryConfig,
    *,
    refuse: Refuse = "missing",
    import_from: Optional[str] = None,
    on_failure: Optional[Callable[[PluginFailure], None]] = None,
) -> DiscoveryReport:
    """The one plugin-loading policy: discover into `registry`, then refuse what must load.

    A name that does not exist at all always raises `PluginNotFound` (a usage error).
    `refuse="modules"` also raises `PluginLoadError` when a `--modules` entry fails (what
    was named must load: `serve`); `"any"` when any plugin fails (`serve --strict`, the
    test kit). `import_from` is put on `sys.path` for modules; `on_failure` sees every
    failure before anything is refused (the caller logs or prints it).
    """
    if config.modules and import_from and import_from not in sys.path:
        sys.path.insert(0, import_from)
    report = discover(registry, config.modules, config.plugins)
    if report.missing:
        lines = "; ".join(f.error for f in report.missing)
        raise PluginNotFound(f"{lines} (check the name, and that it is installed or importable)")
    for failure in report.failed:
        if on_failure is not None:
            on_failure(failure)
    fatal = [f for f in report.failed if refuse == "any" or
             (refuse == "modules" and f.origin.kind == "module")]
    if fatal:
        hint = "; fix or drop the --modules entry" if refuse == "modules" else ""
        raise PluginLoadError("; ".join(f.line() for f in fatal) + hint)
    return report


def _load_entry_points(
    registry: ConnectorRegistry,
    report: DiscoveryReport,
    group: str,
    wanted: Optional[Collection[str]],
) -> None:
    import importlib_metadata

    wanted_keys = {_normalize(w) for w in wanted} if wanted is not None else None
    seen: set[str] = set()
    every = importlib_metadata.entry_points()  # one scan of the installed distributions
    points = sorted(every.select(group=group), key=lambda e: e.name)
    if group == ENTRY_POINT_GROUP:  # flytekit's plugins, as `import flytekit` loads them
        points += sorted(every.select(group=foreign.FLYTEKIT_GROUP), key=lambda e: e.name)
    for ep in points:
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        keys = {_normalize(ep.name)} | ({_normalize(dist_name)} if dist_name else set())
        if wanted_keys is not None and not keys & wanted_keys:
            continue
        seen |= keys
        origin = Origin(
            "entry-point", ep.name, ep.value, dist_name, dist.version if dist is not None else None
        )
        module_name, _, attr = ep.value.partition(":")
        kit = ep.group == foreign.FLYTEKIT_GROUP
        if kit:
            foreign.load_flytekit()  # once: flytekit itself, without its plugin group
        _load_isolated(registry, report, origin, module_name.strip(), attr.strip(),
                       optional=kit)
    for name in sorted(wanted or ()):
        if _normalize(name) not in seen and _normalize(name) != "flytekit":
            report.failed.append(
                PluginFailure(
                    Origin("entry-point", name),
                    NOT_INSTALLED,
                    f"no installed plugin named {name!r} in entry-point group {group!r}",
                )
            )


def _normalize(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _load_isolated(
    registry: ConnectorRegistry,
    report: DiscoveryReport,
    origin: Origin,
    module_name: str,
    attr: str,
    optional: bool = False,
) -> None:
    """Import one plugin into `registry`; on any failure roll back and record it.

    An `optional` plugin (one of flytekit's `flytekit.plugins`, most of which are type
    plugins, not connectors) that registers no connectors is neither loaded nor failed."""
    snapshot = registry.snapshot()
    before = foreign.before_import()

    def add(connector: AsyncConnector) -> None:
        made.append(registry.register(connector, origin=origin))

    try:
        with registry.activate(origin) as made:
            module = import_plugin(module_name, registry, made, origin)
            target = _resolve(module, attr) if attr else module
            if not foreign.adopt(module_name, target, before, add):
                _register_target(target, made, origin, add)
        if not made and optional:
            return
        if not made:
            raise _NoConnectors(
                f"{origin.target or module_name} registered no connectors; register them at "
                "import with ConnectorRegistry.register(...) or point at a connector class"
            )
    except Exception as exc:  # noqa: BLE001 - one broken plugin must not stop the others
        registry.restore(snapshot)
        reason, message = _classify(exc, module_name)
        report.failed.append(PluginFailure(origin, reason, message, exc))
    else:
        report.loaded.append(origin)


class _NoConnectors(Exception):
    pass


class _NoAttribute(ImportError):
    """The module imported but has no such attribute: a name that does not exist."""


def _resolve(module: types.ModuleType, attr: str) -> Any:
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise _NoAttribute(f"module {module.__name__!r} has no attribute {attr!r}") from None
    return target


def _register_target(target: Any, made: list[Registration], origin: Origin,
                     add: Callable[[AsyncConnector], None]) -> None:
    """Register what an entry point or `--modules` spec points at."""
    if isinstance(target, types.ModuleType):
        return
    if isinstance(target, type) and issubclass(target, AsyncConnector):
        if any(type(row.connector) is target for row in made):
            return
        if getattr(target, "__abstractmethods__", None):
            missing = ", ".join(sorted(target.__abstractmethods__))
            raise RegistrationError(f"{target.__qualname__} does not implement {missing}")
        target = target()
    if isinstance(target, AsyncConnector) and any(row.connector is target for row in made):
        return
    if not isinstance(target, AsyncConnector):
        what = (
            f"{_kind(target)}, which does not subclass AsyncConnector"
            if isinstance(target, type) else _kind(target)
        )
        raise RegistrationError(
            f"{origin.target or origin.name} points at {what}, not a connector class, a "
            "connector instance or a module"
        )
    add(target)


def _kind(value: Any) -> str:
    if isinstance(value, type):
        return f"the class {value.__qualname__}"
    if callable(value):
        return f"the callable {getattr(value, '__qualname__', repr(value))}"
    return f"a {type(value).__name__}"


def _classify(exc: Exception, module_name: str) -> tuple[str, str]:
    """Tell 'no such module' from 'the module's own import broke', and summarise in a line."""
    if isinstance(exc, ModuleNotFoundError) and exc.name and (
        module_name == exc.name or module_name.startswith(exc.name + ".")
    ):
        return NOT_FOUND, f"module {module_name!r} not found"
    if foreign.needs_flyte(exc):
        return NEEDS_FLYTE_SDK, (
            f"{module_name!r} is written for the Flyte SDK, which is not installed; "
            f"install it with: {foreign.INSTALL_HINT}"
        )
    if foreign.needs_flytekit(exc):
        return NEEDS_FLYTEKIT, (
            f"{module_name!r} is written for flytekit (Flyte 1), which is not installed; "
            f"install it with: {foreign.FLYTEKIT_HINT}"
        )
    if isinstance(exc, _NoAttribute):
        return NOT_FOUND, str(exc)
    if isinstance(exc, _NoConnectors):
        return NO_CONNECTORS, str(exc)
    if isinstance(exc, RegistrationError):
        return REGISTRATION_ERROR, _one_line(str(exc))
    if isinstance(exc, ImportError):
        return IMPORT_ERROR, f"importing {module_name!r} failed: {_one_line(str(exc))}"
    return IMPORT_ERROR, (
        f"importing {module_name!r} raised {type(exc).__name__}: {_one_line(str(exc))}"
    )


def _one_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "(no message)"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def inventory(registry: ConnectorRegistry, report: Optional[DiscoveryReport] = None) -> dict:
    """What is loaded and what failed, as JSON-ready data (`list` and `list --json` show it).

    Connectors are grouped by name and origin; task types keep registration order.
    """
    grouped: dict[tuple[str, Optional[Origin]], list[dict]] = {}
    sdks: dict[tuple[str, Optional[Origin]], str] = {}
    for row in registry.registrations():
        key = (row.connector.name, row.origin)
        grouped.setdefault(key, []).append({"name": row.category[0], "version": row.category[1]})
        sdks[key] = getattr(row.connector, "sdk", "")
    connectors = [
        {"name": name, "task_types": types_, "source": origin_dict(origin)}
        | ({"sdk": sdks[(name, origin)]} if sdks[(name, origin)] else {})
        for (name, origin), types_ in grouped.items()
    ]
    failed = [
        {
            "plugin": f.origin.name,
            "source": origin_dict(f.origin),
            "reason": f.reason,
            "error": f.error,
        }
        for f in (report.failed if report else [])
    ]
    return {"connectors": connectors, "failed": failed}


def origin_dict(origin: Optional[Origin]) -> dict:
    """An origin as JSON-ready data (`{"kind": "code"}` when registered directly)."""
    if origin is None:
        return {"kind": "code"}
    data = {k: v for k, v in origin.as_dict().items() if v}
    data["description"] = origin.describe()
    return data
