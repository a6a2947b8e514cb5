"""Value objects, the internal mismatch error and time formats shared by the converters.

Kept free of protobuf so the JSON side (to_json, duration parsing) is cheap to import.
"""

from __future__ import annotations

import dataclasses
import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclasses.dataclass(frozen=True)
class FlyteFile:
    """A single blob (Flyte `BlobType.SINGLE`): where it is and its format (e.g. "csv")."""

    uri: str
    format: str = ""


@dataclasses.dataclass(frozen=True)
class FlyteDirectory:
    """A multipart blob (Flyte `BlobType.MULTIPART`): a directory of files at `uri`."""

    uri: str
    format: str = ""


@dataclasses.dataclass(frozen=True)
class StructuredDataset:
    """A structured dataset (a table) stored at `uri` in `format` (e.g. "parquet")."""

    uri: str
    format: str = ""


class Mismatch(Exception):
    """A value does not fit a type; `path` collects the segments on the way up."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []

    def at(self, segment: str) -> Mismatch:
        self.path.insert(0, segment)
        return self


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def key_segment(key: Any) -> str:
    """`.name` for identifier-like keys, `['odd key']` otherwise."""
    if isinstance(key, str) and _IDENT.match(key):
        return "." + key
    return f"[{key!r}]"


def got(value: Any) -> str:
    """A short, readable rendering of an offending value for error messages."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    if isinstance(value, str):
        return text
    return f"{text} ({type(value).__name__})"


def parse_datetime(value: Any) -> datetime:
    """A timezone-aware UTC datetime from a datetime or an ISO 8601 string (naive = UTC)."""
    if isinstance(value, str):
        text = value.strip()
        if text[-1:] in "zZ" and text:
            text = text[:-1] + "+00:00"
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise Mismatch(f"expected a datetime (ISO 8601), got {got(value)}") from None
    elif not isinstance(value, datetime):
        raise Mismatch(f"expected a datetime (ISO 8601), got {got(value)}")
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0,
    "m": 60.0, "h": 3600.0, "d": 86400.0,
}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_ISO = re.compile(
    r"P(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?\Z"
)
_DURATION_HELP = 'expected a duration ("90s", "1h30m", "PT1H30M" or seconds)'


def parse_duration(value: Any) -> timedelta:
    """A timedelta from a timedelta, a number of seconds, "1h30m"-style or ISO 8601 text."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise Mismatch(f"{_DURATION_HELP}, got {got(value)}")
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise Mismatch(f"{_DURATION_HELP}, got {got(value)}")
    text = value.strip()
    sign, body = (-1, text[1:]) if text[:1] == "-" else (1, text.lstrip("+"))
    seconds = _duration_seconds(body)
    if seconds is None:
        raise Mismatch(f"{_DURATION_HELP}, got {got(value)}")
    return sign * seconds


def _duration_seconds(body: str) -> timedelta | None:
    if body.upper().startswith("P"):
        match = _ISO.match(body.upper())
        if not match or body.upper() in ("P", "PT") or body.upper().endswith("T"):
            return None
        parts = {k: float(v) for k, v in match.groupdict().items() if v}
        return timedelta(days=parts.get("d", 0), hours=parts.get("h", 0),
                         minutes=parts.get("m", 0), seconds=parts.get("s", 0))
    try:
        return timedelta(seconds=float(body))
    except ValueError:
        pass
    go_parts: list[tuple[str, str]] = _GO_PART.findall(body)
    if not go_parts or "".join(n + u for n, u in go_parts) != body:
        return None
    micros = sum(round(float(n) * _UNITS[u] * 1e6) for n, u in go_parts)
    return timedelta(microseconds=micros)


def format_duration(value: timedelta) -> str:
    """Compact text such as "1h30m", "1.5s" or "-2m", which parse_duration reads back."""
    micros = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
    sign = "-" if micros < 0 else ""
    micros = abs(micros)
    hours, rest = divmod(micros, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, frac = divmod(rest, 1_000_000)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    if seconds or frac or not text:
        text += f"{seconds}.{frac:06d}".rstrip("0").rstrip(".") + "s"
    return sign + text


def format_datetime(value: datetime) -> str:
    """ISO 8601 in UTC with a trailing "Z"."""
    return parse_datetime(value).isoformat().replace("+00:00", "Z")
