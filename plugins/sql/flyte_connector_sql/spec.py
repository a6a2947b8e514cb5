"""What a SQL task asks for: the query, the database target, the result format, the inputs.

Everything here is checked in `create`, so a malformed template is one clear
INVALID_ARGUMENT line instead of a worker failing later. Input values are encoded to JSON
with small type tags so the worker process binds exactly the values Flyte sent.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import os
from typing import TYPE_CHECKING, Any, Mapping, Optional

from connector_cli.errors import UsageError
from connector_cli.sdk.connector import template_custom

if TYPE_CHECKING:
    from flyteidl2.core.tasks_pb2 import TaskTemplate

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
FORMATS = {"csv": "csv", "jsonl": "jsonl"}
PASSWORD_KWARG = "sql_password"
MASK = "****"
_TEMPLATE_KEYS = {"query", "database", "format", "secrets", "configs", "max_result_bytes",
                  "timeout_seconds"}
_PG_SCHEMES = ("postgresql://", "postgres://")
SQLITE_ROOTS_ENV = "FLYTE_CONNECTOR_SQL_SQLITE_ROOTS"
# Per-task limits: a task may ask for less than the host's cap, never more.
MAX_RESULT_ENV, DEFAULT_MAX_RESULT = "FLYTE_CONNECTOR_SQL_MAX_RESULT_BYTES", 256 << 20
MAX_SECONDS_ENV, DEFAULT_MAX_SECONDS = "FLYTE_CONNECTOR_SQL_MAX_SECONDS", 3600.0


@dataclasses.dataclass(frozen=True)
class QuerySpec:
    """A validated SQL task: `target` is a SQLite path or a password-free PostgreSQL DSN."""

    query: str
    engine: str
    target: str
    format: str = "csv"
    max_result_bytes: int = DEFAULT_MAX_RESULT
    timeout_seconds: float = DEFAULT_MAX_SECONDS

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_template(template: TaskTemplate) -> QuerySpec:
    """Read `custom` (query, database, format); the query may also come from `template.sql`."""
    custom = template_custom(template)
    unknown = sorted(set(custom) - _TEMPLATE_KEYS)
    if unknown:
        raise UsageError(
            f"unknown key {unknown[0]!r} in the sql task's custom; "
            f"expected {', '.join(sorted(_TEMPLATE_KEYS - {'secrets', 'configs'}))}"
        )
    query = custom.get("query") or (template.sql.statement if template.HasField("sql") else "")
    if not isinstance(query, str) or not query.strip():
        raise UsageError("the sql task has no query: set custom.query (or template.sql.statement)")
    fmt = custom.get("format", "csv")
    if fmt not in FORMATS:
        raise UsageError(f"custom.format {fmt!r} is not supported; use one of: csv, jsonl")
    database = custom.get("database", ":memory:")
    if not isinstance(database, str) or not database:
        raise UsageError("custom.database must be a SQLite path or a postgresql:// DSN")
    limits = (_limit(custom, "max_result_bytes", MAX_RESULT_ENV, DEFAULT_MAX_RESULT),
              _limit(custom, "timeout_seconds", MAX_SECONDS_ENV, DEFAULT_MAX_SECONDS))
    if database.startswith(_PG_SCHEMES):
        return QuerySpec(query, POSTGRESQL, check_dsn(database), fmt, int(limits[0]), limits[1])
    return QuerySpec(query, SQLITE, sqlite_path(database), fmt, int(limits[0]), limits[1])


def host_cap(env: str, default: float) -> float:
    """The host's cap on a per-task limit: `env` (a positive number) or `default`."""
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise UsageError(f"{env} must be a positive number, got {raw!r}")
    return value


def _limit(custom: Mapping[str, Any], key: str, env: str, default: float) -> float:
    """custom[key] if given (positive, at most the host's cap), else the host's cap."""
    cap = host_cap(env, default)
    value = custom.get(key)
    if value is None:
        return cap
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= cap:
        raise UsageError(f"custom.{key} must be a positive number up to {cap:g} "
                         f"(this host's {env}), got {value!r}")
    return float(value)


def sqlite_path(database: str) -> str:
    """An absolute SQLite path (relative ones resolve against the daemon's directory),
    symlinks resolved, inside one of the configured roots (`sqlite_roots`)."""
    if database.startswith("sqlite:///"):
        database = database[len("sqlite://"):]
    if database == ":memory:":
        return database
    if "\0" in database or database.startswith("file:"):
        raise UsageError("custom.database must be a plain SQLite file path")
    path = os.path.realpath(os.path.abspath(os.path.expanduser(database)))
    check_sqlite_root(path)
    return path


def sqlite_roots() -> list[str]:
    """Directories SQLite databases may be in: `FLYTE_CONNECTOR_SQL_SQLITE_ROOTS`
    (os.pathsep separated), else only the plugin's state directory."""
    from flyte_connector_sql.jobfiles import state_dir

    raw = os.environ.get(SQLITE_ROOTS_ENV, "")
    roots = [r for r in raw.split(os.pathsep) if r.strip()] or [str(state_dir())]
    return [os.path.realpath(os.path.abspath(os.path.expanduser(r))) for r in roots]


def check_sqlite_root(path: str) -> None:
    """`UsageError` unless the (resolved) path is inside a SQLite root."""
    for root in sqlite_roots():
        if os.path.commonpath([root, path]) == root and path != root:
            return
    raise UsageError(
        "custom.database is outside the directories SQLite databases may be opened from; "
        f"the connector host lists them in {SQLITE_ROOTS_ENV}"
    )


def check_dsn(dsn: str) -> str:
    """Refuse a DSN that carries a password: it would be stored in the template and meta."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - psycopg's parser raises several types
        raise UsageError("custom.database is not a valid postgresql:// DSN") from None
    if parts.get("password"):
        raise UsageError(
            "custom.database must not contain a password; pass it as the connection "
            f"secret {PASSWORD_KWARG!r} (custom.secrets: {{{PASSWORD_KWARG}: SECRET_NAME}})"
        )
    return dsn


def password_from(kwargs: Mapping[str, Any]) -> Optional[str]:
    """The database password from the connection secrets, if one was given."""
    value = kwargs.get(PASSWORD_KWARG)
    return str(value) if value else None


def scrub(text: str, password: Optional[str]) -> str:
    """Mask the password wherever it might appear in a message."""
    return text.replace(password, MASK) if password else text


def encode_params(inputs: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """Inputs as JSON with type tags (datetimes, bytes) for the worker to bind."""
    return {name: _encode(name, value) for name, value in (inputs or {}).items()}


def _encode(name: str, value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"$seconds": value.total_seconds()}
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, (list, tuple)):
        return {"$list": [_encode(name, item) for item in value]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"$json": value}
    uri = getattr(value, "uri", None)
    if isinstance(uri, str):
        return uri
    raise UsageError(
        f"input {name!r}: a {type(value).__name__} cannot be bound as a SQL parameter; "
        "use a scalar, a date/time, bytes, a list or a JSON object"
    )


def decode_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of `encode_params`, giving plain Python values."""
    return {name: _decode(value) for name, value in params.items()}


def _decode(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    (tag, item), = value.items()
    if tag == "$datetime":
        return dt.datetime.fromisoformat(item)
    if tag == "$date":
        return dt.date.fromisoformat(item)
    if tag == "$seconds":
        return dt.timedelta(seconds=item)
    if tag == "$bytes":
        return base64.b64decode(item)
    if tag == "$list":
        return [_decode(v) for v in item]
    return JsonValue(item)


@dataclasses.dataclass(frozen=True)
class JsonValue:
    """A JSON object input: bound as jsonb on PostgreSQL and as JSON text on SQLite."""

    value: Any
