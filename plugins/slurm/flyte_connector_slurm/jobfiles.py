"""A job's files on the cluster: where they are, its log pages and its declared outputs.

Every path is derived from the daemon's job root and the job id (an integer), never read
from the resource meta: `ROOT/ID.out`, `ROOT/ID.err`, `ROOT/ID/exit_code` and
`ROOT/ID/outputs/<declared path>` (each declared path re-checked to stay inside).
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from typing import Any, Optional

from connector_cli.errors import UsageError
from flyte_connector_slurm.config import SlurmConfig
from flyte_connector_slurm.script import EXIT_FILE
from flyte_connector_slurm.spec import check_output_path
from flyte_connector_slurm.transport import Transport

STREAMS = ("out", "err")
PAGE_BYTES = 256 * 1024
DEFAULT_PAGE_LINES = 1000
MAX_OUTPUT_BYTES = 1024 * 1024
_TOKEN = re.compile(r"^(\d+):(\d+)$")


@dataclasses.dataclass(frozen=True)
class JobPaths:
    """The files of job `job_id` under an absolute job root."""

    root: str
    job_id: int

    @property
    def directory(self) -> str:
        return posixpath.join(self.root, str(self.job_id))

    def stream(self, name: str) -> str:
        """`ROOT/ID.out` or `ROOT/ID.err`."""
        return posixpath.join(self.root, f"{self.job_id}.{name}")

    @property
    def exit_file(self) -> str:
        return posixpath.join(self.directory, EXIT_FILE)

    def output(self, relative: str, name: str) -> str:
        """A declared output's path, refusing one that would leave the output directory."""
        check_output_path(relative, f"outputs.{name}")
        return posixpath.join(self.directory, "outputs", posixpath.normpath(relative))


async def job_root(transport: Transport, config: SlurmConfig) -> str:
    """The absolute job root: the configured one, relative ones under the login user's home."""
    if posixpath.isabs(config.job_root):
        return posixpath.normpath(config.job_root)
    return posixpath.join(await transport.home(), config.job_root)


async def read_exit(transport: Transport, paths: JobPaths) -> Optional[str]:
    """What the wrapper recorded ('0', '3', 'terminated'), or None when it recorded nothing."""
    data = await transport.read(paths.exit_file, 0, 64)
    return data.decode(errors="replace").strip() if data is not None else None


async def tail(transport: Transport, path: str, max_bytes: int = 600, max_lines: int = 5) -> str:
    """The last lines of a file for a failure message ('' when empty or missing)."""
    text = (await tail_text(transport, path, max_bytes)).strip()
    return " | ".join(text.splitlines()[-max_lines:])


async def tail_text(transport: Transport, path: str, max_bytes: int) -> str:
    """At most the last `max_bytes` of a file as text ('' when empty or missing)."""
    size = await transport.size(path)
    if not size:
        return ""
    data = await transport.read(path, max(0, size - max_bytes), max_bytes) or b""
    return data.decode("utf-8", "replace")


def parse_token(token: str) -> list[int]:
    """Byte offsets into stdout and stderr from a page token; '' starts at the beginning."""
    if not token:
        return [0, 0]
    match = _TOKEN.match(token)
    if not match:
        raise UsageError(f"log token {token!r} was not issued by the slurm connector")
    return [int(match.group(1)), int(match.group(2))]


async def read_page(transport: Transport, paths: JobPaths, token: str, limit: int,
                    finished: bool) -> tuple[list[str], Optional[str]]:
    """Up to `limit` lines, stdout's then stderr's, and the next token (None on the last
    page of a finished job; a running job always gets one so its output can be followed)."""
    offsets = parse_token(token)
    limit = limit if limit > 0 else DEFAULT_PAGE_LINES
    lines: list[str] = []
    more = not finished
    for index, stream in enumerate(STREAMS):
        while len(lines) < limit:
            data = await transport.read(paths.stream(stream), offsets[index], PAGE_BYTES)
            if not data:
                break
            complete, used = _split(data, limit - len(lines), finished)
            lines.extend(complete)
            offsets[index] += used
            if not used:
                break
        if len(lines) >= limit:
            more = True
            break
    return lines, (f"{offsets[0]}:{offsets[1]}" if more else None)


def _split(data: bytes, want: int, finished: bool) -> tuple[list[str], int]:
    """Complete lines from `data`; a line without its newline only once the job has
    finished (or when it fills a whole read), so a running job's half line waits."""
    lines: list[str] = []
    used = 0
    while len(lines) < want and used < len(data):
        end = data.find(b"\n", used)
        if end < 0:
            if used or not (finished or len(data) == PAGE_BYTES):
                break
            end = len(data)
        lines.append(data[used:end].decode("utf-8", "replace"))
        used = min(end + 1, len(data))
    return lines, used


def file_uri(transport: Transport, path: str) -> str:
    """A link to a cluster file: file:// on a login node, sftp:// over SSH."""
    host = getattr(transport, "host", None)
    if host is None:
        return "file://" + path
    user = getattr(transport, "user", None)
    port = getattr(transport, "port", 22)
    return f"sftp://{user + '@' if user else ''}{host}:{port}{path}"


async def read_outputs(transport: Transport, paths: JobPaths, outputs: dict[str, str],
                       kinds: dict[str, str]) -> tuple[dict[str, Any], str]:
    """Declared outputs as Python values (files as FlyteFile) or ('', problem)."""
    from connector_cli.literals import FlyteFile

    values: dict[str, Any] = {}
    for name, relative in sorted(outputs.items()):
        path = paths.output(relative, name)
        kind = kinds.get(name, "file")
        data = await transport.read(path, 0, MAX_OUTPUT_BYTES + 1)
        if data is None:
            return {}, (f"the job exited 0 but did not write output {name!r} "
                        f"($FLYTE_OUTPUT_DIR/{relative})")
        if kind == "file":
            values[name] = FlyteFile(uri=file_uri(transport, path))
            continue
        if len(data) > MAX_OUTPUT_BYTES:
            return {}, f"output {name!r} is over 1 MiB; declare it as a file"
        value, problem = _value(data.decode("utf-8", "replace").strip(), kind)
        if problem:
            return {}, f"output {name!r} ($FLYTE_OUTPUT_DIR/{relative}): {problem}"
        values[name] = value
    return values, ""


def _value(text: str, kind: str) -> tuple[Any, str]:
    try:
        if kind == "int":
            return int(text), ""
        if kind == "float":
            return float(text), ""
    except ValueError:
        return None, f"{text[:40]!r} is not {'an integer' if kind == 'int' else 'a number'}"
    if kind == "bool":
        if text.lower() in ("true", "1", "yes"):
            return True, ""
        if text.lower() in ("false", "0", "no"):
            return False, ""
        return None, f"{text[:40]!r} is not true or false"
    return text, ""
