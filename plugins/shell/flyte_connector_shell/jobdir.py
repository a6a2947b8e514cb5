"""Job directories: made by the daemon, checked before use, removed when no longer needed.

`create` makes `shell-XXXXXXXX/` (mode 0700) and writes a random nonce into its `nonce`
file; the wrapper and every process of the job carry the same nonce in their
environment. A later call only touches a directory whose path is absolute and free of
symlinks and `..`, whose name is a shell job's, that this user owns, and whose nonce
matches the meta's: so a meta naming `/dev` or someone else's directory opens nothing.
Files named from meta (logs, outputs) must resolve inside that directory.

Terminal jobs' directories are removed after a retention period
(`FLYTE_CONNECTOR_SHELL_RETENTION_SECONDS`, default one day; `off` keeps them) by a sweep
that runs at most once a minute during `create`, and a deleted job's files go at once
(unless `FLYTE_CONNECTOR_SHELL_KEEP_DELETED=1`), leaving a small tombstone so `get`
still answers ABORTED until the sweep removes it too. The mechanism is the SDK's
(`connector_cli.sdk.job_dirs`); the rules are this module's: a shell job ended at its exit
record or tombstone, and runs while a live process carries its nonce.
"""

from __future__ import annotations

import hmac
import os
import secrets
import tempfile
from pathlib import Path
from typing import Callable, Optional

from connector_cli import UsageError
from connector_cli.sdk.job_dirs import (
    RetentionPolicy,
    Sweeper,
    checked_job_dir,
    default_state_dir,
    private_dir,
)

STATE_DIR_ENV = "FLYTE_CONNECTOR_SHELL_STATE_DIR"
PREFIX = "shell-"
NONCE_FILE = "nonce"
DELETED_MARK = "deleted"
EXIT_FILE = "exit.json"


class ControlFilesGone(UsageError):
    """The job directory is a shell job's, but its nonce file is gone: the job's own
    command removed it (`rm -rf` in the job directory). The meta is still the daemon's
    (it is signed), so the job's processes can be found by the meta's nonce."""


def state_dir() -> Path:
    """Where jobs with a remote output prefix keep their directories."""
    return default_state_dir("flyte-connector-shell", STATE_DIR_ENV)


def local_dir(output_prefix: str) -> Optional[Path]:
    """The local directory an output prefix names, or None for a remote store (s3://...)."""
    if output_prefix.startswith("file://"):
        return Path(output_prefix[len("file://") :])
    if not output_prefix or "://" in output_prefix:
        return None
    return Path(output_prefix).absolute()


def job_base(output_prefix: str) -> Path:
    """Where the job directory goes: a local output prefix, else the state directory."""
    return local_dir(output_prefix) or private_dir(state_dir(), "shell state directory")


def check_workdir(workdir: Optional[str]) -> None:
    """Refuse an absolute workdir that is not an existing directory."""
    if workdir and Path(workdir).is_absolute() and not Path(workdir).is_dir():
        raise UsageError(f"shell task: workdir {workdir!r} is not an existing directory")


def workdir(given: Optional[str], job_dir: Path) -> Path:
    """An absolute workdir as is; a relative one is made inside the job directory; by
    default `work/` inside it, so a command that empties its working directory leaves
    the job's control files (nonce, spec, exit record) alone."""
    if not given:
        made = job_dir / "work"
        made.mkdir()
        return made
    made = job_dir / given
    made.mkdir(parents=True, exist_ok=True)
    return made


def make(base: Path) -> tuple[Path, str]:
    """A fresh job directory under `base` (its real path) and the job's nonce."""
    try:
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        job_dir = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base)).resolve()
    except OSError as exc:
        raise UsageError(
            f"shell task: cannot create a job directory in {str(base)!r}: {exc.strerror}"
        ) from None
    nonce = secrets.token_hex(16)
    fd = os.open(job_dir / NONCE_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(nonce)
    (job_dir / "outputs").mkdir()
    return job_dir, nonce


def _read_nonce(job_dir: Path) -> Optional[str]:
    try:
        fd = os.open(job_dir / NONCE_FILE, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd) as handle:
        return handle.read(64).strip()


def checked(job_dir: str, nonce: str) -> Optional[Path]:
    """The job directory a meta names, or None when it no longer exists.

    `UsageError` when the path is not one of this connector's job directories: relative,
    through a symlink or `..`, not named `shell-*`, not ours, or with another nonce.
    """
    path = checked_job_dir(job_dir, lambda name: name.startswith(PREFIX), "shell job directory")
    if path is None:
        return None
    found = _read_nonce(path)
    if found is None and nonce and not os.path.lexists(path / NONCE_FILE):
        raise ControlFilesGone("the job removed its own control files from its job directory")
    if found is None or not nonce or not hmac.compare_digest(found, nonce):
        raise UsageError("resource_meta does not match the job directory it names")
    return path


def inside(job_dir: Path, relative: str) -> Optional[Path]:
    """`job_dir/relative` when it resolves (symlinks followed) inside `job_dir`, else None."""
    candidate = (job_dir / relative).resolve()
    return candidate if candidate.is_relative_to(job_dir) and candidate != job_dir else None


def _ended_at(job_dir: Path) -> Optional[float]:
    """When a shell job directory's job ended (its exit record or tombstone; for a job
    that recorded neither, when it started), or None for what is not one."""
    if not job_dir.name.startswith(PREFIX):
        return None
    try:
        times = [(job_dir / name).lstat().st_mtime for name in (EXIT_FILE, DELETED_MARK)
                 if (job_dir / name).exists()]
        if not times:  # lost (no exit record): judged by age, if no process runs it
            times = [(job_dir / NONCE_FILE).lstat().st_mtime]
    except OSError:
        return None
    return max(times)


def _still_runs() -> Callable[[Path], bool]:
    """A job directory runs while a live process carries its nonce (one /proc pass); one
    without a readable nonce is spared too."""
    from flyte_connector_shell import procfs

    live = procfs.running_markers()

    def runs(job_dir: Path) -> bool:
        nonce = _read_nonce(job_dir)
        return nonce is None or nonce.encode() in live

    return runs


POLICY = RetentionPolicy(
    env_prefix="FLYTE_CONNECTOR_SHELL",
    tombstone=frozenset({NONCE_FILE, DELETED_MARK, EXIT_FILE}),
    ended_at=_ended_at,
    still_runs=_still_runs,
    noun="shell",
)
RETENTION_ENV = POLICY.retention_env
KEEP_DELETED_ENV = POLICY.keep_deleted_env
_KEEP = POLICY.tombstone
discard = POLICY.discard
sweep = POLICY.sweep


def sweeper() -> Sweeper:
    """The sweeper of one connector: the bases it used and always the state directory."""
    return Sweeper(POLICY, state_dir)
