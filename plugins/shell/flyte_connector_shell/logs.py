"""Paging through a job's stdout and stderr files.

A page token is `STDOUT_OFFSET:STDERR_OFFSET` (byte offsets): any daemon replica can resume
from it. A page holds stdout lines first, then stderr lines, at most `MAX_PAGE_LINES`
lines and `MAX_PAGE_BYTES` bytes whatever the caller asks for: lines are read from disk
one at a time until either bound, so a 1 GB log costs one page of memory, not its size.
While the job runs, a trailing line without its newline waits for the next page; once it
has finished, it is returned.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from pathlib import Path
from typing import BinaryIO, Optional

from connector_cli.errors import UsageError

STREAMS = ("stdout", "stderr")
MAX_LINE = 64 * 1024
DEFAULT_PAGE_LINES = 1000
MAX_PAGE_LINES = 10_000
MAX_PAGE_BYTES = 1 << 20  # with 64 KiB lines, 1,000 of them would not fit in one message
_TOKEN = re.compile(r"^(\d+):(\d+)$")


@dataclasses.dataclass(frozen=True)
class Page:
    """Lines as (stream, text) pairs and the token of the next page (None on the last)."""

    lines: list[tuple[str, str]]
    next_token: Optional[str]


def parse_token(token: str) -> list[int]:
    """Byte offsets from a token; '' starts at the beginning."""
    if not token:
        return [0, 0]
    match = _TOKEN.match(token)
    if not match:
        raise UsageError(f"log token {token!r} was not issued by the shell connector")
    return [int(match.group(1)), int(match.group(2))]


def read_page(job_dir: Path, token: str, limit: int, finished: bool) -> Page:
    """Up to `limit` lines (a default page when 0) from `token` on.

    The last page of a finished job has no next token; a running job always gets one so
    the caller can follow the output.
    """
    offsets = parse_token(token)
    limit = min(limit, MAX_PAGE_LINES) if limit > 0 else DEFAULT_PAGE_LINES
    lines: list[tuple[str, str]] = []
    room = MAX_PAGE_BYTES
    more = not finished
    for index, stream in enumerate(STREAMS):
        path = job_dir / stream
        handle = _open_regular(path)
        if handle is None:
            continue
        with handle:
            handle.seek(offsets[index])
            while len(lines) < limit:
                raw = handle.readline(MAX_LINE)
                if not raw or (not raw.endswith(b"\n") and len(raw) < MAX_LINE and not finished):
                    break
                if len(raw) > room and lines:  # the page is full: this line starts the next
                    break
                offsets[index] += len(raw)
                room -= len(raw)
                lines.append((stream, raw.rstrip(b"\n").decode("utf-8", "replace")))
            more = more or offsets[index] < os.fstat(handle.fileno()).st_size
    return Page(lines, f"{offsets[0]}:{offsets[1]}" if more else None)


def _open_regular(path: Path) -> Optional[BinaryIO]:
    """`path` opened for reading when it is a regular file and not a symlink, else None:
    a job cannot make the daemon read another file through its log names."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


def tail(path: Path, max_bytes: int = 600, max_lines: int = 5) -> str:
    """The last few lines of a file (for failure messages), '' if it is empty or missing."""
    handle = _open_regular(path)
    if handle is None:
        return ""
    with handle:
        size = handle.seek(0, 2)
        handle.seek(max(0, size - max_bytes))
        data = handle.read()
    text = data.decode("utf-8", "replace").strip()
    return " | ".join(text.splitlines()[-max_lines:])
