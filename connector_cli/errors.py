"""One small error tree shared by the SDK, the CLI and the server.

The CLI maps these to one line and an exit code; the server maps them to gRPC status
codes. Messages are written for the person who has to act on them and never carry
secrets.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of every error this package raises on purpose."""


class UsageError(ConnectorError):
    """The caller asked for something malformed: bad input, a bad option, a bad file.

    The CLI exits with status 2; the server answers INVALID_ARGUMENT.
    """


class ConnectorNotFound(ConnectorError, LookupError):
    """No connector serves the requested task type or name (gRPC NOT_FOUND)."""


class RegistrationError(ConnectorError, ValueError):
    """`ConnectorRegistry.register` refused a connector; the message names it and the fix."""


class DuplicateConnectorError(RegistrationError):
    """A (task type, version) pair is already served by another connector."""


class ResourceMetaError(UsageError, ValueError):
    """`resource_meta` bytes could not be decoded into the connector's metadata type."""


class UnknownStateError(ConnectorError, ValueError):
    """`convert_to_flyte_phase` was given an external state it does not know."""


class TransientError(ConnectorError):
    """A connector could not reach its service for now (a timeout, a dropped connection,
    HTTP 429 or 5xx): the call may well succeed later.

    Raised from `get`, the daemon keeps answering the job's last known phase for up to
    `serve --get-error-grace` before it returns the error (gRPC UNAVAILABLE).
    """


class PluginLoadError(ConnectorError):
    """A plugin or `--modules` entry could not be loaded (start-up failure)."""


class StartupError(ConnectorError):
    """The daemon could not start: port in use, unreadable TLS files (exit status 1)."""


class PluginNotFound(UsageError):
    """A `--modules` name or a `--plugins` name that does not exist (exit status 2)."""


class LiteralError(UsageError, ValueError):
    """A value could not be converted to or from a Flyte literal.

    The message names the input and the path inside it, e.g.
    `input 'rows[3].when': expected a datetime (ISO 8601), got 'yesterday'`.
    """


def bounded(text: str, limit: int = 2000) -> str:
    """`text` stripped, whole when short (a multi-line reason stays whole), else cut at `limit`."""
    text = text.strip()
    if len(text) <= limit:
        return text
    return f"{text[:limit].rstrip()}... ({len(text) - limit} more characters)"


TRANSIENT_MARK = "(transient upstream error)"


def describe_failure(exc: BaseException, where: str, transient: bool = False,
                     limit: int = 2000) -> str:
    """One line for an exception a connector method raised, led by `where` (the method, and
    the connector when known), so a bare `KeyError: 'api_token'` says who raised it; our
    own errors show their message, anything else its type too. A `transient` one (see
    `connector_cli.shield.is_transient`) is marked so a client can tell it from a daemon
    it cannot reach."""
    text = bounded(str(exc), limit)
    mark = f" {TRANSIENT_MARK}" if transient or isinstance(exc, TransientError) else ""
    if isinstance(exc, ConnectorError):
        return f"{where} failed{mark}: {text or type(exc).__name__}"
    line = f"{where} failed{mark}: {type(exc).__name__}" + (f": {text}" if text else "")
    if isinstance(exc, KeyError):
        line += (" (a key it looked up is missing: a secret or config keyword argument, "
                 "an input, or a field of the template's custom)")
    return line


class RemoteError(ConnectorError):
    """A connector daemon answered a client call with an error status.

    `code` is the `grpc.StatusCode` name (e.g. 'UNAVAILABLE'); the message is the daemon's.
    """

    def __init__(self, message: str, code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.code = code
