"""Daemon-side connections: secrets and configs a deployment gives its connectors.

The open-source Flyte 2 backend cannot resolve secrets (its secret manager always fails)
and Flyte 1 sends no `connection` at all, so the daemon reads them itself from a YAML file
(`serve --connections`):

    connections:
      - task_type: databricks
        project: analytics          # optional: narrows the rule
        domain: production          # optional
        secrets:
          databricks_token: {file: /etc/flyte-connector/secrets/analytics-token}
          other_token: {env: OTHER_TOKEN}
          test_only: {value: "not-secret", inline: true}   # only with inline: true
        configs:
          region: eu-west-1

The first rule that matches a call's (task type, project, domain) gives its values. They
fill what the request's own `connection` lacks: a key the request carries keeps the
request's value (docs/deploy.md says why). Values are read from files and the environment
when the file is loaded; `ConnectionsSource` re-reads the file, and the secret files it
names, when they change (a Kubernetes Secret update swaps a symlink), and keeps the last
good version when the new one is broken. Nothing here ever puts a value in a message.

GetTask, DeleteTask and the log and metrics calls carry no execution metadata, so when the
rule CreateTask matched is narrowed by project or domain, the daemon wraps the
`resource_meta` in a signed scope envelope (`wrap_scope`) that says which project and
domain later calls belong to; without narrowed rules the bytes are untouched.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from connector_cli.errors import ConnectorError, ResourceMetaError, UsageError
from connector_cli.record import Record

if TYPE_CHECKING:
    from connector_cli.sdk.secrets import Connection
    from connector_cli.signing import MetaSigner

logger = logging.getLogger(__name__)

ENV = "FLYTE_CONNECTOR_CONNECTIONS"
CHECK_INTERVAL = 1.0  # seconds between checks for a changed file (at most, and only on use)
SCOPE_MAGIC = b"fcs1."
_RULE_KEYS = frozenset({"task_type", "project", "domain", "secrets", "configs"})
_SOURCE_KEYS = frozenset({"file", "env", "value", "inline"})


class Scope(Record):
    """Who a call is for: the project and domain of its execution (None when unknown)."""

    __slots__ = ("project", "domain")
    project: Optional[str]
    domain: Optional[str]

    def __init__(self, project: Optional[str] = None, domain: Optional[str] = None) -> None:
        self._set(project=project or None, domain=domain or None)


NO_SCOPE = Scope()


class Rule(Record):
    """One entry of the file: where it applies and the values it gives."""

    __slots__ = ("task_type", "project", "domain", "secrets", "configs")
    task_type: str
    project: Optional[str]
    domain: Optional[str]
    secrets: Mapping[str, str]
    configs: Mapping[str, str]

    def __init__(self, task_type: str, project: Optional[str], domain: Optional[str],
                 secrets: Mapping[str, str], configs: Mapping[str, str]) -> None:
        self._set(task_type=task_type, project=project, domain=domain, secrets=secrets,
                  configs=configs)

    @property
    def narrowed(self) -> bool:
        """True when the rule depends on the project or domain."""
        return self.project is not None or self.domain is not None

    def matches(self, scope: Scope) -> bool:
        """True when the rule applies to a call in `scope`."""
        return (self.project is None or self.project == scope.project) and \
            (self.domain is None or self.domain == scope.domain)

    def __repr__(self) -> str:  # values never printed
        return (f"Rule({self.task_type!r}, project={self.project!r}, domain={self.domain!r}, "
                f"secrets={sorted(self.secrets)}, configs={sorted(self.configs)})")


class Connections:
    """The rules of one version of the file, by task type, and the files they read."""

    def __init__(self, rules: list[Rule], files: tuple[str, ...] = ()) -> None:
        self.rules = rules
        self.files = files
        self._by_type: dict[str, list[Rule]] = {}
        for rule in rules:
            self._by_type.setdefault(rule.task_type, []).append(rule)

    def lookup(self, task_type: str, scope: Scope = NO_SCOPE) -> Optional[Rule]:
        """The first rule for `task_type` that matches `scope`, or None."""
        for rule in self._by_type.get(task_type, ()):
            if rule.matches(scope):
                return rule
        return None

    def narrowed(self, task_type: str) -> bool:
        """True when some rule for `task_type` depends on the project or domain."""
        return any(rule.narrowed for rule in self._by_type.get(task_type, ()))

    def __len__(self) -> int:
        return len(self.rules)


def parse(text: str, where: str, environ: Optional[Mapping[str, str]] = None) -> Connections:
    """The rules of a connections file's text; `UsageError` naming the rule and key (never
    a value) when something is wrong or a value cannot be read."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageError(f"connections file {where} is not valid YAML{line}") from None
    if data is None:
        data = {"connections": []}
    if not isinstance(data, dict) or not isinstance(data.get("connections"), list):
        raise UsageError(f"connections file {where}: expected a mapping with a "
                         "'connections' list")
    env = os.environ if environ is None else environ
    files: list[str] = []
    rules = [_rule(item, f"{where} connections[{n}]", env, files)
             for n, item in enumerate(data["connections"])]
    return Connections(rules, tuple(files))


def _rule(item: Any, where: str, env: Mapping[str, str], files: list[str]) -> Rule:
    if not isinstance(item, dict):
        raise UsageError(f"{where}: expected a mapping")
    unknown = sorted(set(map(str, item)) - _RULE_KEYS)
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r} (use {sorted(_RULE_KEYS)})")
    task_type = item.get("task_type")
    if not isinstance(task_type, str) or not task_type:
        raise UsageError(f"{where}: task_type must be a non-empty string")
    narrowing = {}
    for key in ("project", "domain"):
        value = item.get(key)
        if value is not None and (not isinstance(value, (str, int)) or value == ""):
            raise UsageError(f"{where}: {key} must be a non-empty string")
        narrowing[key] = None if value is None else str(value)
    secrets = _values(item.get("secrets"), f"{where}.secrets", env, files, secret=True)
    configs = _values(item.get("configs"), f"{where}.configs", env, files, secret=False)
    clash = sorted(set(secrets) & set(configs))
    if clash:
        raise UsageError(f"{where}: {clash[0]!r} is both a secret and a config; rename one")
    return Rule(task_type, narrowing["project"], narrowing["domain"], secrets, configs)


def _values(data: Any, where: str, env: Mapping[str, str], files: list[str],
            secret: bool) -> dict[str, str]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a mapping of names to values")
    return {str(name): _value(source, f"{where}.{name}", env, files, secret)
            for name, source in data.items()}


def _value(source: Any, where: str, env: Mapping[str, str], files: list[str],
           secret: bool) -> str:
    """One value: `{file: PATH}`, `{env: NAME}`, or for configs (and secrets marked
    `inline: true`) the value itself."""
    if not isinstance(source, dict):
        if secret:
            raise UsageError(
                f"{where}: a secret comes from {{file: PATH}} or {{env: NAME}}; an inline "
                "value needs {value: ..., inline: true}"
            )
        return _scalar(source, where)
    unknown = sorted(set(map(str, source)) - _SOURCE_KEYS)
    kinds = [k for k in ("file", "env", "value") if k in source]
    if unknown or len(kinds) != 1:
        raise UsageError(f"{where}: give exactly one of file, env or value")
    kind = kinds[0]
    if kind == "file":
        path = str(source["file"])
        files.append(path)
        return _read_file(path, where)
    if kind == "env":
        name = str(source["env"])
        if name not in env:
            raise UsageError(f"{where}: environment variable {name} is not set")
        return env[name]
    if secret and source.get("inline") is not True:
        raise UsageError(f"{where}: an inline secret value needs inline: true (prefer file "
                         "or env: the connections file is then no secret itself)")
    return _scalar(source["value"], where)


def _scalar(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UsageError(f"{where}: expected a string or a number")
    return str(value)


def _read_file(path: str, where: str) -> str:
    """A secret file's text without a trailing newline (as `kubectl create secret` files
    often end with one)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise UsageError(f"{where}: cannot read {path}: {reason}") from None


def _signature(paths: tuple[str, ...]) -> tuple[Any, ...]:
    """What changes when any of `paths` (symlinks followed) is replaced or rewritten."""
    out: list[Any] = []
    for path in paths:
        try:
            info = os.stat(path)
            out.append((info.st_ino, info.st_mtime_ns, info.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


class ConnectionsSource:
    """The connections file as the daemon sees it now: loaded at start (a broken file is a
    start-up error), re-checked on use at most every `interval` seconds, reloaded when the
    file or a secret file it names changed. A broken new version keeps the last good one,
    says so in one log line and calls `on_failure` (a metric)."""

    def __init__(self, path: str, interval: float = CHECK_INTERVAL,
                 on_failure: Optional[Callable[[], None]] = None) -> None:
        self.path = path
        self.interval = interval
        self.on_failure = on_failure
        self.failures = 0
        self._failed_signature: Any = None
        self._current, self._signature = self._load()
        self._checked = time.monotonic()

    def _load(self) -> tuple[Connections, tuple[Any, ...]]:
        before = _signature((self.path,))
        try:
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise UsageError(f"cannot read the connections file {self.path}: {reason}") from None
        connections = parse(text, self.path)
        return connections, before + _signature(connections.files)

    def current(self) -> Connections:
        """The rules in force, reloaded first when a file changed."""
        now = time.monotonic()
        if now - self._checked >= self.interval:
            self._checked = now
            self._maybe_reload()
        return self._current

    def _maybe_reload(self) -> None:
        signature = _signature((self.path,)) + _signature(self._current.files)
        if signature == self._signature:
            return
        try:
            self._current, self._signature = self._load()
        except ConnectorError as exc:
            if signature != self._failed_signature:  # one line per broken version
                self._failed_signature = signature
                self.failures += 1
                logger.error("connections file %s not reloaded, keeping the last good "
                             "version: %s", self.path, exc)
                if self.on_failure is not None:
                    self.on_failure()
            return
        self._failed_signature = None
        logger.info("connections file %s reloaded: %d rules", self.path,
                    len(self._current))

    def lookup(self, task_type: str, scope: Scope = NO_SCOPE) -> Optional[Rule]:
        """The first rule for `task_type` matching `scope` (see `Connections.lookup`)."""
        return self.current().lookup(task_type, scope)

    def connection(self, task_type: str, project: Optional[str] = None,
                   domain: Optional[str] = None) -> Optional[Connection]:
        """The secrets and configs for a call of `task_type` in `project` and `domain`
        (None: no rule applies). The one lookup every service uses."""
        rule = self.lookup(task_type, Scope(project, domain))
        if rule is None:
            return None
        from connector_cli.sdk.secrets import Connection

        return Connection(secrets=dict(rule.secrets), configs=dict(rule.configs))


def scope_of(metadata: Any) -> Scope:
    """The project and domain of a CreateTask's `task_execution_metadata` (either
    generation: the execution's identifier, else the task's)."""
    if metadata is None:
        return NO_SCOPE
    task_execution = metadata.task_execution_id
    execution = task_execution.node_execution_id.execution_id
    if execution.project or execution.domain:
        return Scope(execution.project, execution.domain)
    task = task_execution.task_id
    return Scope(task.project, task.domain)


def _scope_task(task_type: str) -> str:
    return "scope:" + task_type  # a MAC domain of its own: a scope is no connector meta


def wrap_scope(signer: MetaSigner, task_type: str, version: int, scope: Scope,
               meta: bytes) -> bytes:
    """`meta` in an envelope saying which project and domain its later calls are for,
    signed, so a caller cannot claim another project's connection."""
    body = b"\0".join(((scope.project or "").encode(), (scope.domain or "").encode(), meta))
    return SCOPE_MAGIC + signer.sign(_scope_task(task_type), version, body)


def unwrap_scope(signer: MetaSigner, task_type: str, version: int,
                 data: bytes) -> tuple[Scope, bytes]:
    """The scope and the inner meta of an envelope made by `wrap_scope`; a meta without
    one has no scope. `ResourceMetaError` when the envelope does not verify."""
    if not data.startswith(SCOPE_MAGIC):
        return NO_SCOPE, data
    body = signer.verify(_scope_task(task_type), version, data[len(SCOPE_MAGIC):])
    parts = body.split(b"\0", 2)
    if len(parts) != 3:
        raise ResourceMetaError("resource_meta has a malformed connection scope")
    try:
        project, domain = parts[0].decode(), parts[1].decode()
    except UnicodeDecodeError:
        raise ResourceMetaError("resource_meta has a malformed connection scope") from None
    return Scope(project, domain), parts[2]


def fill(secrets: Mapping[str, str], configs: Mapping[str, str],
         rule: Rule) -> tuple[Mapping[str, str], Mapping[str, str]]:
    """The request's secrets and configs with `rule`'s values for the keys the request
    has under neither: what the request says for itself wins."""
    taken = secrets.keys() | configs.keys()
    if rule.secrets:
        secrets = {**{k: v for k, v in rule.secrets.items() if k not in taken}, **secrets}
    if rule.configs:
        configs = {**{k: v for k, v in rule.configs.items() if k not in taken}, **configs}
    return secrets, configs


def accepted(method: Callable[..., Any], kwargs: dict[str, str]) -> dict[str, str]:
    """The subset of `kwargs` `method` accepts: all with `**kwargs`, else the named ones
    (a log or metrics method written before connections existed keeps working)."""
    import inspect

    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return {}
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return kwargs
    names = {p.name for p in params}
    return {k: v for k, v in kwargs.items() if k in names}
