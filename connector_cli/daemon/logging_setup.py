"""Daemon logging: one handler on stderr, as text lines or as one JSON object per line.

The handler masks the secrets of the request being served in every record, whichever
logger (the framework's, a connector's, a library's) produced it. Libraries that keep
their records from the root handler (their own handler, `propagate = False`, as the Flyte
SDK's `flyte` logger does) are taken over by `host_library_loggers` once plugins are
loaded, or they would print secrets in clear and ignore `--log-format` and `--log-level`;
a logger a library creates later is taken over the moment it adds a handler of its own or
turns propagation off.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Optional, TextIO

from connector_cli.masking import MaskingFilter

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message"[, "exception"]}` per record, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            data["exception"] = record.exc_text
        elif record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def configure_logging(
    level: str = "info", fmt: str = "text", stream: Optional[TextIO] = None
) -> None:
    """Send every log record at `level` and above to `stream` (stderr) in `fmt`."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    handler = DaemonHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(MaskingFilter())
    handler.locked = True
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


class DaemonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The daemon's one handler; once `locked`, its format is fixed (the Flyte SDK's
    `initialize_logger` wraps every root handler's formatter in its own)."""

    locked = False

    def setFormatter(self, fmt: Optional[logging.Formatter]) -> None:
        """Set the formatter, unless the daemon has fixed it."""
        if not self.locked:
            super().setFormatter(fmt)


class HostedLogger(logging.Logger):
    """A library's logger the daemon has taken over: its records reach the daemon's handler
    (masked, in the daemon's format, at the daemon's level), and the library cannot take it
    back by adding a handler, setting a level or turning propagation off again."""

    @property  # type: ignore[override]
    def propagate(self) -> bool:
        """Always True: records go to the root handler."""
        return True

    @propagate.setter
    def propagate(self, value: bool) -> None:
        pass

    def addHandler(self, hdlr: logging.Handler) -> None:
        """Ignored: the daemon's handler is the one."""

    def setLevel(self, level: int | str) -> None:
        """Ignored: `--log-level` decides."""


class _WatchedLogger(logging.Logger):
    """A logger created after start-up: taken over (`HostedLogger`) when its library gives
    it a handler of its own or turns its propagation off."""

    @property  # type: ignore[override]
    def propagate(self) -> bool:
        """True until the library turns it off, which takes the logger over instead."""
        return True

    @propagate.setter
    def propagate(self, value: bool) -> None:
        if not value:
            _host(self)

    def addHandler(self, hdlr: logging.Handler) -> None:
        """Take the logger over rather than let its records bypass the daemon's handler."""
        _host(self)


def _host(item: logging.Logger) -> None:
    """Make `item` a `HostedLogger`: no handlers of its own, the root's level."""
    for old in list(item.handlers):
        item.removeHandler(old)
    item.__class__ = HostedLogger
    item.level = logging.NOTSET
    logging.root.manager._clear_cache()  # type: ignore[attr-defined]


def host_library_loggers(own: str = "connector_cli") -> list[str]:
    """Take over every logger (but the daemon's own) that has handlers of its own or does
    not propagate: its handlers go, its level follows the root's; loggers created from now
    on are watched (`_WatchedLogger`). The names taken over."""
    taken = []
    for name, item in list(logging.root.manager.loggerDict.items()):
        if not isinstance(item, logging.Logger) or name == own or name.startswith(own + "."):
            continue
        if item.propagate and not item.handlers:
            continue
        _host(item)
        taken.append(name)
    if logging.getLoggerClass() is logging.Logger:
        logging.setLoggerClass(_WatchedLogger)
    return taken
