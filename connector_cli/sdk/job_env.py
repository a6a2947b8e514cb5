"""How a task's inputs reach a command: as text, in `FLYTE_INPUT_<NAME>` variables.

Shared by connectors that run a command or script (shell, Slurm) so an input looks the
same to the command whichever of them runs it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

INPUT_PREFIX = "FLYTE_INPUT_"


def input_text(value: Any) -> str:
    """How an input value appears to a command: strings as is, files as their path (a
    `file://` URI) or URI, dates as ISO 8601, durations as seconds, everything else as
    compact JSON."""
    if isinstance(value, str):
        return value
    uri = getattr(value, "uri", None)
    if isinstance(uri, str):
        return uri[len("file://"):] if uri.startswith("file://") else uri
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return repr(value.total_seconds())
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        from connector_cli.literals import to_json

        try:
            return json.dumps(to_json(value), separators=(",", ":"), sort_keys=True,
                              allow_nan=False)
        except ValueError:  # NaN or Infinity: what a command gets must parse as JSON
            from connector_cli.errors import UsageError

            raise UsageError("holds NaN or Infinity, which JSON cannot carry") from None


def env_name(input_name: str) -> str:
    """The environment variable carrying an input, e.g. 'max-rows' -> FLYTE_INPUT_MAX_ROWS."""
    return INPUT_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", input_name).upper()
