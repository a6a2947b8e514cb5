"""Write result rows as CSV (with a header) or JSON lines, streaming, to a temp file first."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import os
import uuid
from pathlib import Path
from typing import Any, Iterable, Sequence

RESULT_NAME = {"csv": "result.csv", "jsonl": "result.jsonl"}


def _text(value: Any) -> Any:
    """A JSON-friendly form of one database value."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    return value


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    value = _text(value)
    return json.dumps(value) if isinstance(value, (dict, list)) else value


def unique_columns(names: Sequence[str]) -> list[str]:
    """Column names made unique (`SELECT 1, 1` has two columns named '1')."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0) + 1
        seen[name] = count
        out.append(name if count == 1 else f"{name}_{count}")
    return out


class ResultWriter:
    """Streams rows into `<job_dir>/result.<ext>`; `close()` renames the temp file in place."""

    def __init__(self, job_dir: Path, fmt: str, columns: Sequence[str]) -> None:
        self.path = job_dir / RESULT_NAME[fmt]
        self._tmp = job_dir / f".{self.path.name}.tmp"
        self._file = open(self._tmp, "w", newline="", encoding="utf-8")
        self.columns = unique_columns(columns)
        self.fmt = fmt
        self.rows = 0
        if fmt == "csv":
            self._csv = csv.writer(self._file)
            if self.columns:
                self._csv.writerow(self.columns)

    def write(self, rows: Iterable[Sequence[Any]]) -> None:
        """Append rows (sequences in column order)."""
        if self.fmt == "csv":
            for row in rows:
                self._csv.writerow([_csv_cell(v) for v in row])
                self.rows += 1
            return
        for row in rows:
            record = {c: _text(v) for c, v in zip(self.columns, row)}
            self._file.write(json.dumps(record, default=str) + "\n")
            self.rows += 1

    def size(self) -> int:
        """Bytes written so far."""
        self._file.flush()
        return os.fstat(self._file.fileno()).st_size

    def close(self) -> Path:
        """Flush and move the finished file to its final name."""
        self._file.close()
        os.replace(self._tmp, self.path)
        return self.path

    def discard(self) -> None:
        """Drop a partial result (failed or cancelled query)."""
        self._file.close()
        self._tmp.unlink(missing_ok=True)
