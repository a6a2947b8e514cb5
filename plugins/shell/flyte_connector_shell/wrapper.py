"""The job's session leader: run the command, then record how it ended in `exit.json`.

Started by the connector as `python -I wrapper.py JOB_DIR` in a new session, with the
command's environment and stdout/stderr already pointing at the job's log files;
JOB_DIR/spec.json holds the argv and working directory. It outlives the daemon that
started it, so any daemon process can later read the exit record. Standard library only: it
runs outside the daemon's import path.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

SPEC_FILE = "spec.json"
EXIT_FILE = "exit.json"


def write_atomically(path: Path, data: dict) -> None:
    """Write JSON to a temporary file, fsync it, then rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _keep_waiting(signum: int, frame: object) -> None:
    """Delete signals the whole process group; stay alive to record the command's end."""


def _join_cgroup(path: str) -> None:
    """Move into the job's cgroup (see `cgroups`) before the command starts, so every
    process of the job is in it; without one, the daemon's process scan tracks the job."""
    if path:
        try:
            Path(path, "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            pass


def run(job_dir: Path) -> dict:
    """Run the command described in JOB_DIR/spec.json and return its exit record."""
    spec = json.loads((job_dir / SPEC_FILE).read_text())
    _join_cgroup(spec.get("cgroup") or "")
    argv = spec["argv"]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, cwd=spec["cwd"])
    except OSError as exc:
        print(f"flyte-connector-shell: cannot run {argv[0]!r}: {exc.strerror}", file=sys.stderr)
        code = 126 if isinstance(exc, PermissionError) else 127
        return {"exit_code": code, "signal": None, "cpu_seconds": 0.0, "max_rss_bytes": 0}
    returncode = proc.wait()
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    sig = -returncode if returncode < 0 else None
    return {
        "exit_code": 128 + sig if sig else returncode,
        "signal": signal.Signals(sig).name if sig else None,
        "cpu_seconds": used.ru_utime + used.ru_stime,
        "max_rss_bytes": used.ru_maxrss * 1024,
    }


def main(args: list[str]) -> int:
    """Entry point: `wrapper.py JOB_DIR`."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _keep_waiting)
    job_dir = Path(args[0])
    record = run(job_dir)
    record["finished_at"] = time.time()
    write_atomically(job_dir / EXIT_FILE, record)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
