"""The shell task format: template `custom` -> a validated `ShellSpec`, inputs -> argv and env.

Inputs never pass through a shell: they reach the command as environment variables
(`FLYTE_INPUT_<NAME>`) and, for argv commands, through `{{.inputs.NAME}}` placeholders
replaced inside single argv elements. A script runs under `/bin/sh -c` and sees inputs
only through the environment, so a value like `$(rm -rf ~)` stays an inert string.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import PurePosixPath
from typing import Any, Mapping, Optional

from connector_cli.errors import UsageError
from connector_cli.sdk.job_env import INPUT_PREFIX, env_name, input_text

PLACEHOLDER = re.compile(r"\{\{\s*\.inputs\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BASE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR")
DEFAULT_GRACE = 1.0
MAX_GRACE = 5.0
FIELDS = {"command", "script", "env", "inherit_env", "workdir", "outputs", "kill_grace_seconds"}
CONNECTION_FIELDS = {"secrets", "configs"}


@dataclasses.dataclass(frozen=True)
class ShellSpec:
    """What to run: `argv` (the script form is already `/bin/sh -c SCRIPT`) and how."""

    argv: tuple[str, ...]
    is_script: bool = False
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    inherit_env: bool = False
    workdir: Optional[str] = None
    outputs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    grace: float = DEFAULT_GRACE


def parse_custom(custom: Mapping[str, Any]) -> ShellSpec:
    """Validate the template's `custom` dict; every problem is one `UsageError` line."""
    unknown = sorted(set(custom) - FIELDS - CONNECTION_FIELDS)
    if unknown:
        raise UsageError(
            f"shell task: unknown field(s) {', '.join(unknown)} in custom; "
            f"known: {', '.join(sorted(FIELDS))}"
        )
    argv, is_script = _command(custom)
    return ShellSpec(
        argv=argv,
        is_script=is_script,
        env=_string_map(custom.get("env"), "env", check_key=_env_key),
        inherit_env=_bool(custom.get("inherit_env", False), "inherit_env"),
        workdir=_workdir(custom.get("workdir")),
        outputs=_string_map(custom.get("outputs"), "outputs", check_value=_relative_path),
        grace=_grace(custom.get("kill_grace_seconds", DEFAULT_GRACE)),
    )


def _command(custom: Mapping[str, Any]) -> tuple[tuple[str, ...], bool]:
    command, script = custom.get("command"), custom.get("script")
    if (command is None) == (script is None):
        raise UsageError(
            "shell task: custom needs exactly one of 'command' (argv list) or 'script'"
        )
    if script is not None:
        if not isinstance(script, str) or not script.strip():
            raise UsageError("shell task: 'script' must be a non-empty string")
        if PLACEHOLDER.search(script):
            raise UsageError(
                "shell task: {{.inputs.*}} placeholders are not substituted into scripts; "
                f"read inputs from the environment instead, e.g. \"${INPUT_PREFIX}NAME\""
            )
        return ("/bin/sh", "-c", script), True
    if isinstance(command, str):
        raise UsageError(
            "shell task: 'command' must be a list of arguments; use 'script' for a string"
        )
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise UsageError("shell task: 'command' must be a non-empty list of strings")
    return tuple(command), False


def _string_map(value: Any, field: str, check_key: Any = None, check_value: Any = None) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"shell task: '{field}' must be a mapping of names to strings")
    for key, item in value.items():
        if not isinstance(item, str):
            raise UsageError(
                f"shell task: {field}.{key} must be a string, got {type(item).__name__}"
            )
        if check_key:
            check_key(key, field)
        if check_value:
            check_value(item, f"{field}.{key}")
    return dict(value)


def _env_key(key: str, field: str) -> None:
    if not ENV_NAME.match(key):
        raise UsageError(
            f"shell task: {field} name {key!r} is not a valid environment variable name"
        )


def _relative_path(path: str, where: str) -> None:
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or str(pure) == ".":
        raise UsageError(
            f"shell task: {where} must be a relative path inside the output directory, got {path!r}"
        )


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"shell task: '{field}' must be true or false")
    return value


def _optional_str(value: Any, field: str) -> Optional[str]:
    if value is not None and (not isinstance(value, str) or not value):
        raise UsageError(f"shell task: '{field}' must be a non-empty string")
    return value


def _workdir(value: Any) -> Optional[str]:
    workdir = _optional_str(value, "workdir")
    if workdir and ".." in PurePosixPath(workdir).parts:
        raise UsageError(f"shell task: workdir must not contain '..', got {workdir!r}")
    return workdir


def _grace(value: Any) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not 0 <= value <= MAX_GRACE:
        raise UsageError(
            f"shell task: 'kill_grace_seconds' must be a number from 0 to {MAX_GRACE:g}"
        )
    return float(value)


def render_argv(spec: ShellSpec, inputs: Mapping[str, Any]) -> list[str]:
    """Replace `{{.inputs.NAME}}` inside argv elements; a value never becomes extra args."""
    if spec.is_script:
        return list(spec.argv)

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in inputs:
            known = ", ".join(sorted(inputs)) or "none"
            raise UsageError(
                f"shell task: command uses {{{{.inputs.{name}}}}} but inputs are: {known}"
            )
        try:
            return input_text(inputs[name])
        except UsageError as exc:
            raise UsageError(f"shell task: input {name!r} {exc}") from None

    return [PLACEHOLDER.sub(replace, arg) for arg in spec.argv]


def command_env(
    spec: ShellSpec,
    inputs: Mapping[str, Any],
    extra: Mapping[str, str],
    job_env: Optional[Mapping[str, str]] = None,
    connection: Optional[Mapping[str, str]] = None,
) -> dict[str, str]:
    """The command's environment, later entries winning: host basics (or the whole host
    environment with `inherit_env`), execution env vars, template `env`, connection
    secrets and configs (by keyword), inputs, then `extra`."""
    inherited = {k: os.environ[k] for k in BASE_ENV if k in os.environ}
    base = os.environ if spec.inherit_env else inherited
    env = dict(base)
    env.setdefault("PATH", os.defpath)
    env.update(job_env or {})
    env.update(spec.env)
    for key, value in (connection or {}).items():
        _env_key(key, "connection key")
        env[key] = str(value)
    seen: dict[str, str] = {}
    for name, value in inputs.items():
        key = env_name(name)
        if key in seen:
            raise UsageError(f"shell task: inputs {seen[key]!r} and {name!r} both map to ${key}")
        seen[key] = name
        try:
            env[key] = input_text(value)
        except UsageError as exc:
            raise UsageError(f"shell task: input {name!r} {exc}") from None
    env.update(extra)
    return env


# Linux: one argument or one NAME=value environment string, its NUL included.
MAX_ARG_STRLEN = 32 * 4096


def check_exec(argv: list[str], env: Mapping[str, str]) -> None:
    """Refuse a command line or environment the kernel would refuse (`UsageError` naming
    the argument or variable, never its value): a NUL byte, one string over
    `MAX_ARG_STRLEN`, or all of them over ARG_MAX. The job would otherwise fail to start
    with "Argument list too long" (INTERNAL) or a NUL error Flyte retries."""
    total = 0
    items = [(f"command argument {i}", arg) for i, arg in enumerate(argv)]
    items += [(f"environment variable ${key}", f"{key}={value}") for key, value in env.items()]
    for what, text in items:
        if "\0" in text:
            raise UsageError(f"shell task: {what} contains a NUL byte, which a command line "
                             "or environment cannot carry")
        size = len(text.encode("utf-8", "surrogateescape")) + 1
        if size > MAX_ARG_STRLEN:
            raise UsageError(
                f"shell task: {what} is {size} bytes; Linux passes at most {MAX_ARG_STRLEN} "
                "bytes per argument or environment variable: pass large data as a file input"
            )
        total += size + 8  # and its pointer
    limit = os.sysconf("SC_ARG_MAX") - 8192  # the wrapper's own arguments and headroom
    if total > limit:
        raise UsageError(
            f"shell task: the command line and environment take {total} bytes, over the "
            f"{limit} the system allows: pass large data as file inputs"
        )
