"""Daemon-level settings of the Slurm connector, read from the environment at each call.

They belong to the deployment, not to a task: where job files live on the cluster's shared
filesystem, the default way to reach the cluster, and SSH credentials for the calls that
carry no connection (GetTaskLogs, GetTaskMetrics). Every replica must be configured alike.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import PurePosixPath
from typing import Mapping, Optional

from connector_cli.errors import UsageError

PREFIX = "FLYTE_CONNECTOR_SLURM_"
DEFAULT_JOB_ROOT = "flyte-slurm-jobs"
DEFAULT_COMMAND_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class SlurmConfig:
    """What the daemon's environment says about the cluster."""

    job_root: str = DEFAULT_JOB_ROOT
    transport: str = "local"
    ssh_host: Optional[str] = None
    ssh_port: int = 22
    ssh_user: Optional[str] = None
    ssh_key_file: Optional[str] = None
    ssh_known_hosts_file: Optional[str] = None
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT


def load_config(environ: Optional[Mapping[str, str]] = None) -> SlurmConfig:
    """The settings from `FLYTE_CONNECTOR_SLURM_*` variables; a bad value is a UsageError."""
    env = os.environ if environ is None else environ

    def get(name: str) -> Optional[str]:
        return env.get(PREFIX + name) or None

    job_root = get("JOB_ROOT") or DEFAULT_JOB_ROOT
    check_job_root(job_root)
    host = get("SSH_HOST")
    transport = get("TRANSPORT") or ("ssh" if host else "local")
    if transport not in ("local", "ssh"):
        raise UsageError(f"{PREFIX}TRANSPORT must be 'local' or 'ssh', got {transport!r}")
    return SlurmConfig(
        job_root=job_root,
        transport=transport,
        ssh_host=host,
        ssh_port=_int(get("SSH_PORT") or "22", "SSH_PORT"),
        ssh_user=get("SSH_USER"),
        ssh_key_file=get("SSH_KEY_FILE"),
        ssh_known_hosts_file=get("SSH_KNOWN_HOSTS_FILE"),
        command_timeout=float(_int(get("COMMAND_TIMEOUT") or "60", "COMMAND_TIMEOUT")),
    )


def check_job_root(root: str) -> None:
    """Job files are `ROOT/<job id>.out|.err` and `ROOT/<job id>/`; ROOT may be relative to
    the login user's home. '%' would be expanded by sbatch, so it is refused."""
    parts = PurePosixPath(root).parts
    if not root or "%" in root or ".." in parts or any(c in root for c in "\n\r\0"):
        raise UsageError(
            f"{PREFIX}JOB_ROOT must be a directory path without '%', '..' or newlines, "
            f"got {root!r}"
        )


def _int(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(f"{PREFIX}{name} must be a positive integer, got {text!r}")
    return value
