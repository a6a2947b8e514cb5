"""The slurm task format: template `custom` -> a validated `SlurmSpec` -> sbatch arguments.

Every option becomes exactly one `--name=value` argument after validation; nothing from
the template or the inputs is ever joined into a shell command line. Inputs reach the job
only through the rendered batch script (see `script.py`).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import PurePosixPath
from typing import Any, Mapping, Optional

from connector_cli.errors import UsageError

NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
MEMORY = re.compile(r"^[0-9]+[KMGT]?$")
TIME = re.compile(r"^([0-9]+-)?[0-9]+(:[0-9]+){0,2}$")
HOST = re.compile(r"^[A-Za-z0-9_.\-:\[\]]{1,253}$")
SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.,:=+/@&|*!()\-\[\]]{1,256}$")
FIELDS = {
    "script", "partition", "time_limit", "cpus", "memory", "gpus", "nodes", "account", "qos",
    "job_name", "sbatch_flags", "outputs", "transport", "ssh",
}
CONNECTION_FIELDS = {"secrets", "configs"}
# Extra sbatch options a task may set: scheduling hints only. Nothing that changes where
# output goes, which environment or user the job gets, or how sbatch reports (those are ours).
VALUE_FLAGS = {
    "constraint", "nodelist", "exclude", "reservation", "gres", "mem-per-cpu", "mem-per-gpu",
    "ntasks", "ntasks-per-node", "cpus-per-gpu", "gpus-per-node", "gpus-per-task", "licenses",
    "begin", "nice", "comment", "hint", "distribution", "threads-per-core", "tmp", "wckey",
    "time-min", "signal", "dependency",
}
SWITCH_FLAGS = {"exclusive", "requeue", "no-requeue", "contiguous", "overcommit", "spread-job"}
OUTPUT_KINDS = ("int", "float", "str", "bool", "file")


@dataclasses.dataclass(frozen=True)
class SshTarget:
    """Where to reach a login node over SSH (credentials come from the connection)."""

    host: str
    port: int = 22
    user: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class SlurmSpec:
    """A validated task: the script, the sbatch options and how to reach the cluster."""

    script: str
    options: tuple[str, ...] = ()
    outputs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    transport: Optional[str] = None
    ssh: Optional[SshTarget] = None


def fail(message: str) -> UsageError:
    """A one-line task error, prefixed like every other slurm task error."""
    return UsageError(f"slurm task: {message}")


def parse_custom(custom: Mapping[str, Any], default_name: str = "flyte-task") -> SlurmSpec:
    """Validate the template's `custom`; every problem is one `UsageError` line."""
    unknown = sorted(set(custom) - FIELDS - CONNECTION_FIELDS)
    if unknown:
        raise fail(f"unknown field(s) {', '.join(unknown)} in custom; "
                   f"known: {', '.join(sorted(FIELDS))}")
    script = custom.get("script")
    if not isinstance(script, str) or not script.strip():
        raise fail("custom.script must be a non-empty string (the batch script body)")
    if "\0" in script:
        raise fail("custom.script must not contain NUL bytes")
    options = [f"--job-name={_name(custom.get('job_name', default_name), 'job_name')}"]
    options += _resource_options(custom)
    options += _extra_flags(custom.get("sbatch_flags"))
    outputs = _outputs(custom.get("outputs"))
    transport = custom.get("transport")
    if transport is not None and transport not in ("local", "ssh"):
        raise fail(f"custom.transport must be 'local' or 'ssh', got {transport!r}")
    return SlurmSpec(script=script, options=tuple(options), outputs=outputs,
                     transport=transport, ssh=parse_ssh(custom.get("ssh")))


def _resource_options(custom: Mapping[str, Any]) -> list[str]:
    options = []
    for field, flag in (("partition", "partition"), ("account", "account"), ("qos", "qos")):
        if custom.get(field) is not None:
            options.append(f"--{flag}={_name(custom[field], field)}")
    if custom.get("time_limit") is not None:
        options.append(f"--time={_time(custom['time_limit'])}")
    for field, flag, low in (("cpus", "cpus-per-task", 1), ("gpus", "gpus", 0),
                             ("nodes", "nodes", 1)):
        if custom.get(field) is not None:
            value = _count(custom[field], field, low)
            if field != "gpus" or value:
                options.append(f"--{flag}={value}")
    if custom.get("memory") is not None:
        memory = custom["memory"]
        if isinstance(memory, int) and not isinstance(memory, bool) and memory > 0:
            memory = f"{memory}M"
        if not isinstance(memory, str) or not MEMORY.match(memory):
            raise fail(f"custom.memory must be a size like 512M, 4G or a number of MB, "
                       f"got {memory!r}")
        options.append(f"--mem={memory}")
    return options


def _extra_flags(flags: Any) -> list[str]:
    if flags is None:
        return []
    if not isinstance(flags, dict):
        raise fail("custom.sbatch_flags must be a mapping of sbatch option names to values")
    options = []
    for name in sorted(flags):
        value = flags[name]
        if name in SWITCH_FLAGS:
            if value is not True and value is not False:
                raise fail(f"sbatch_flags.{name} is a switch: use true or false")
            if value:
                options.append(f"--{name}")
        elif name in VALUE_FLAGS:
            text = _number_text(value)
            if not isinstance(text, str) or not SAFE_VALUE.match(text) or text.startswith("-"):
                raise fail(f"sbatch_flags.{name} must be a plain value (letters, digits, "
                           f"_.,:=+/@&|*!()-[]), got {value!r}")
            options.append(f"--{name}={text}")
        else:
            allowed = ", ".join(sorted(VALUE_FLAGS | SWITCH_FLAGS))
            raise fail(f"sbatch flag {name!r} is not allowed; allowed: {allowed}")
    return options


def _number_text(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise fail(f"custom.{field} must be a name of letters, digits, '_', '.' or '-', "
                   f"got {value!r}")
    return value


def _time(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        if float(value).is_integer():
            return str(int(value))
    if isinstance(value, str) and TIME.match(value):
        return value
    raise fail(f"custom.time_limit must be minutes (e.g. 30) or Slurm time like '1:30:00' "
               f"or '2-00:00:00', got {value!r}")


def _count(value: Any, field: str, low: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 100000:
        raise fail(f"custom.{field} must be an integer >= {low}, got {value!r}")
    return value


def check_output_path(path: Any, where: str) -> str:
    """A path relative to the job's output directory; re-checked on every later call."""
    pure = PurePosixPath(path) if isinstance(path, str) else None
    if pure is None or not path or pure.is_absolute() or ".." in pure.parts or str(pure) == ".":
        raise fail(f"{where} must be a relative path inside the output directory, got {path!r}")
    return path


def _outputs(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail("custom.outputs must map output names to paths in $FLYTE_OUTPUT_DIR")
    return {name: check_output_path(path, f"outputs.{name}") for name, path in value.items()}


def parse_ssh(value: Any) -> Optional[SshTarget]:
    """`{host, port, user}` of a login node, checked."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"host", "port", "user"}:
        raise fail("custom.ssh must be a mapping with host, and optionally port and user")
    host, port, user = value.get("host"), value.get("port", 22), value.get("user")
    if not isinstance(host, str) or not HOST.match(host):
        raise fail(f"custom.ssh.host must be a host name or address, got {host!r}")
    port = _count(port, "ssh.port", 1)
    if port > 65535:
        raise fail(f"custom.ssh.port must be a TCP port (1-65535), got {port}")
    if user is not None:
        user = _name(user, "ssh.user")
    return SshTarget(host=host, port=port, user=user)
