"""Secrets and configs for a local run (`flyte-connector test`, the test kit): what the
Flyte backend would put in `connection`.

Secrets come from the environment (`FLYTE_SECRET_<NAME>`), secrets files (JSON objects or
dotenv) and `--secret NAME=VALUE`, later sources winning. Like the backend, a template
whose `custom.secrets` maps a keyword argument to a secret name gets that keyword filled
with the secret's value; `custom.configs` become the connection configs. Values never
appear in error messages.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional

from connector_cli.errors import UsageError
from connector_cli.sdk.connector import template_custom
from connector_cli.sdk.secrets import Connection

if TYPE_CHECKING:
    from flyteidl2.core.tasks_pb2 import TaskTemplate

ENV_PREFIX = "FLYTE_SECRET_"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_DOTENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.\-]*)\s*=\s*(.*?)\s*$")


def collect_secrets(
    pairs: Iterable[str] = (),
    files: Iterable[str | Path] = (),
    environ: Optional[Mapping[str, str]] = None,
) -> dict[str, str]:
    """Secrets from `FLYTE_SECRET_*` variables, then files, then NAME=VALUE pairs.

    The part of a variable name after the prefix is the secret name, lower-cased when it
    is written all in capitals (`FLYTE_SECRET_API_KEY` gives `api_key`).
    """
    found: dict[str, str] = {}
    for key, value in (environ or {}).items():
        if key.startswith(ENV_PREFIX) and len(key) > len(ENV_PREFIX):
            name = key[len(ENV_PREFIX):]
            found[name.lower() if name.isupper() else name] = value
    for file in files:
        found.update(read_secrets_file(file))
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not _NAME.match(name.strip()):
            raise UsageError(
                f"--secret expects NAME=VALUE with NAME a plain identifier, got {_shape(pair)}"
            )
        found[name.strip()] = value
    return found


def read_secrets_file(path: str | Path) -> dict[str, str]:
    """A JSON object of names to values, or dotenv lines `NAME=VALUE` (# comments)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise UsageError(f"cannot read secrets file {str(file)!r}: {reason}") from None
    if text.lstrip().startswith("{"):
        return _json_secrets(text, str(file))
    return _dotenv_secrets(text, str(file))


def _json_secrets(text: str, where: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"secrets file {where!r} is not valid JSON (line {exc.lineno}: {exc.msg})"
        ) from None
    out = {}
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise UsageError(
                f"secrets file {where!r}: the value of {name!r} must be a string or number"
            )
        out[str(name)] = str(value)
    return out


def _dotenv_secrets(text: str, where: str) -> dict[str, str]:
    out = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _DOTENV_LINE.match(line)
        if match is None:
            raise UsageError(
                f"secrets file {where!r} line {number}: expected NAME=VALUE (JSON or dotenv)"
            )
        name, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[name] = value
    return out


def _shape(pair: str) -> str:
    """Describe a malformed pair without echoing what may be a secret value."""
    name = pair.partition("=")[0]
    return f"{name[:20]!r}=..." if "=" in pair else "a value without '='"


def connection_for(template: TaskTemplate, secrets: Mapping[str, str]) -> Connection:
    """The connection the Flyte backend would send for `template`, given secret values.

    `custom.secrets` (keyword -> secret name) takes the value of that secret name (or of
    a secret named like the keyword); every given secret is passed as well.
    `custom.configs` become the configs.
    """
    custom = template_custom(template)
    resolved = dict(secrets)
    for keyword, secret_name in _string_map(custom.get("secrets"), "secrets").items():
        found = _find(secrets, secret_name)
        if found is not None:
            resolved[keyword] = found
        elif keyword not in secrets:
            raise UsageError(
                f"the template needs secret {secret_name!r} (for {keyword!r}); pass "
                f"--secret {secret_name}=VALUE, a --secrets-file, or {_env_name(secret_name)}"
            )
    configs = _string_map(custom.get("configs"), "configs")
    return Connection(secrets=resolved, configs=configs)


def _string_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"the template's custom.{what} must be a mapping of names to strings")
    return {str(k): str(v) for k, v in value.items()}


def _find(secrets: Mapping[str, str], secret_name: str) -> Optional[str]:
    """The value of `secret_name`, also under the name an environment variable can spell
    (`jobsvc-token` is `FLYTE_SECRET_JOBSVC_TOKEN`, read as `jobsvc_token`)."""
    if secret_name in secrets:
        return secrets[secret_name]
    spelled = _env_key(secret_name)
    for candidate in (spelled, spelled.lower()):
        if candidate in secrets:
            return secrets[candidate]
    return None


def _env_key(secret_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", secret_name)


def _env_name(secret_name: str) -> str:
    """The variable to set for `secret_name`: capitals when the name has none of its own."""
    key = _env_key(secret_name)
    return ENV_PREFIX + (key.upper() if key == key.lower() else key)
