"""Frozen configuration built once by the CLI and handed to the core.

`ServerConfig` declares every `serve` option once: its field, default, type and help."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Optional

from connector_cli.errors import UsageError
from connector_cli.record import Record


class DiscoveryConfig(Record):
    """Which plugins to load: `plugins` None means every installed one, () means none."""

    __slots__ = ("modules", "plugins")
    modules: tuple[str, ...]
    plugins: Optional[tuple[str, ...]]

    def __init__(self, modules: tuple[str, ...] = (),
                 plugins: Optional[tuple[str, ...]] = None) -> None:
        self._set(modules=modules, plugins=plugins)


# 16 MiB: real task templates are kilobytes, and Flyte offloads literals above 10 MB by
# default, so inline inputs stay under it; a request costs a few times its size in RSS.
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
# Requests of at least 1 MiB share this many bytes in flight (None: 4 x the message size).
INFLIGHT_MESSAGES = 4
# The Flyte backend's grpc-go client refuses responses over 4 MiB (its default).
DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
# How long a job's last state stands in for transient GetTask failures (seconds).
DEFAULT_GET_ERROR_GRACE = 600.0
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


class Option(Record):
    """How a `ServerConfig` field appears on `flyte-connector serve`'s command line.

    `kind` names the value's type for the CLI (see `connector_cli.cli.serve_command`):
    text, port, port-or-off (0 means None), count (>= 1), seconds (>= 0), bytes (>= 1024),
    file, dir, time (ISO 8601), flag, processes, apis (a comma list of API generations),
    or a tuple of choices. `c0` is the Flyte SDK server's spelling, accepted as a hidden
    alias. `per_worker`: not handed to `--processes`
    workers as it is (the supervisor sets it per worker, or acts on it itself). `env`:
    also read from FLYTE_CONNECTOR_<NAME>."""

    __slots__ = ("help", "kind", "c0", "per_worker", "hidden", "env")
    help: str
    kind: Any
    c0: Optional[str]
    per_worker: bool
    hidden: bool
    env: bool

    def __init__(self, help: str, kind: Any = "text", c0: Optional[str] = None,
                 per_worker: bool = False, hidden: bool = False, env: bool = True) -> None:
        self._set(help=help, kind=kind, c0=c0, per_worker=per_worker, hidden=hidden,
                  env=env and not hidden)


def option(default: Any, help: str, kind: Any = "text", **more: Any) -> Any:
    """A `ServerConfig` field with its default and its command-line `Option`."""
    return field(default=default, metadata={"option": Option(help, kind, **more)})


def options() -> list[tuple[str, Any, Option]]:
    """(name, default, Option) of every serve option, in declaration order."""
    return [(f.name, f.default, f.metadata["option"]) for f in fields(ServerConfig)]


# A frozen dataclass, not a `Record`: each option is declared once, below, and the CLI,
# the worker command line of `--processes` and the docs are derived from it. Compiling
# it costs about 1 ms at start-up (24 fields, measured), 1 % of the daemon's ready time.
@dataclass(frozen=True)
class ServerConfig:
    """How `flyte-connector serve` listens and runs connector code: one field per option.

    `metrics_port` None disables the Prometheus endpoint and 0 binds an ephemeral one (the
    CLI's `--metrics-port 0` means None; c0's `--prometheus_port 0` means 0). TLS is on
    when `tls_cert` and `tls_key` are set. `worker_state` is set only in the worker
    processes of `serve --processes N`: the port is shared (SO_REUSEPORT) and metrics and
    readiness go to that directory for the supervising parent instead of an HTTP endpoint.
    """

    host: str = option("::", "Address to listen on ('::' is every IPv6 and IPv4 address).")
    port: int = option(8000, "gRPC port; 0 picks a free one (the log says which).", "port",
                       per_worker=True)
    metrics_port: Optional[int] = option(
        9090, "Prometheus /metrics port on the same host; 0 disables metrics.", "port-or-off",
        c0="--prometheus_port", per_worker=True)
    workers: int = option(32, "Threads that run plain-def connector methods.", "count",
                          c0="--worker")
    grace_period: float = option(
        25.0, "Seconds in-flight requests may take to finish after SIGTERM/SIGINT.", "seconds")
    tls_cert: Optional[str] = option(None, "Server certificate (PEM): serve TLS.", "file")
    tls_key: Optional[str] = option(None, "Private key (PEM) of --tls-cert.", "file")
    tls_client_ca: Optional[str] = option(
        None, "CA (PEM) that client certificates must be signed by: mutual TLS.", "file")
    max_message_size: int = option(
        DEFAULT_MAX_MESSAGE_SIZE, "Largest gRPC message accepted or sent, in bytes; larger "
        "requests get RESOURCE_EXHAUSTED.", "bytes")
    meta_key_file: Optional[str] = option(
        None, "Key (at least 32 bytes) that signs the resource_meta of connectors holding "
        "host-local state; every replica that may get a job's calls needs the same one. "
        "Default: a key generated once in --state-dir.", "file")
    previous_meta_key_file: Optional[str] = option(
        None, "The key before the current one, still accepted while rotating.", "file")
    state_dir: Optional[str] = option(
        None, "The daemon's own state (its generated meta key). "
        "Default: $XDG_STATE_HOME/flyte-connector or ~/.local/state/flyte-connector.", "dir")
    max_inflight_bytes: Optional[int] = option(
        None, "Bytes that requests of 1 MiB or more may hold at once; beyond it they get "
        "RESOURCE_EXHAUSTED (retry). Default: 4 x --max-message-size.", "bytes")
    connections: Optional[str] = option(
        None, "YAML file of secrets and configs per task type (narrowed by project and "
        "domain), read from files and env vars; re-read when it changes (docs/deploy.md).",
        "file")
    get_error_grace: float = option(
        DEFAULT_GET_ERROR_GRACE, "Seconds a job's last state answers GetTask while its "
        "status check fails transiently; then the error is returned. 0 disables.", "seconds")
    max_response_bytes: int = option(
        DEFAULT_MAX_RESPONSE_BYTES, "Largest GetTask answer sent (the backend refuses more "
        "than 4 MiB); larger outputs go to <output_prefix>/outputs.pb.", "bytes")
    sign_foreign_metas: bool = option(
        False, "Sign the resource_meta of Flyte SDK connectors too, refusing forged ones "
        "(docs/security.md). Off: bytes identical to the Flyte SDK server's.", "flag")
    accept_unsigned_metas_until: Optional[str] = option(
        None, "With --sign-foreign-metas: still accept unsigned metas until this ISO 8601 "
        "time (tasks started before signing was switched on).", "time")
    log_level: str = option("info", "Least severe log level printed.", LOG_LEVELS)
    log_format: str = option("text", "Log lines as text, or as one JSON object per line.",
                             LOG_FORMATS)
    strict: bool = option(False, "Refuse to start when any installed plugin fails to load.",
                          "flag")
    processes: int = option(
        1, "Worker processes sharing the port (SO_REUSEPORT), supervised by this one; "
        "'auto' = one per available core.", "processes", per_worker=True)
    timeout: Optional[float] = option(
        None, "Stop by itself after this many seconds, as after SIGTERM (c0's --timeout).",
        "seconds", per_worker=True, env=False)  # FLYTE_CONNECTOR_TIMEOUT is `test`'s
    api: Optional[tuple[str, ...]] = option(
        None, "API generations to serve on the port: v2 (Flyte 2's connector API), v1 (Flyte "
        "1's agent API, needs flyte-connector[flyte1]), or v1,v2. Default: v2, and v1 when "
        "the flyteidl package is installed.", "apis")
    worker_state: Optional[str] = option(None, "", "dir", per_worker=True, hidden=True)

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        if self.workers < 1:
            raise UsageError(f"workers must be at least 1, got {self.workers}")
        if self.processes < 1:
            raise UsageError(f"processes must be at least 1, got {self.processes}")
        if self.grace_period < 0:
            raise UsageError(f"grace_period must not be negative, got {self.grace_period}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise UsageError("TLS needs both a certificate and a key (--tls-cert and --tls-key)")
        if self.max_inflight_bytes is not None and self.max_inflight_bytes < 1:
            raise UsageError("max_inflight_bytes must be positive")
        if self.api is not None and (not self.api or set(self.api) - {"v1", "v2"}):
            raise UsageError(f"api must name v1, v2 or both, got {','.join(self.api)!r}")
        if self.tls_client_ca and not self.tls_cert:
            raise UsageError("--tls-client-ca (mTLS) needs --tls-cert and --tls-key as well")
        if self.get_error_grace < 0:
            raise UsageError(f"get_error_grace must not be negative, got {self.get_error_grace}")
        if self.max_response_bytes < 1024:
            raise UsageError("max_response_bytes must be at least 1024")
        if self.accept_unsigned_metas_until is not None:
            if not self.sign_foreign_metas:
                raise UsageError("--accept-unsigned-metas-until needs --sign-foreign-metas")
            _instant(self.accept_unsigned_metas_until)

    @property
    def unsigned_metas_until(self) -> Optional[float]:
        """`accept_unsigned_metas_until` as epoch seconds, or None."""
        text = self.accept_unsigned_metas_until
        return None if text is None else _instant(text)

    @property
    def inflight_budget(self) -> int:
        """Bytes that large requests (1 MiB or more) may hold at once."""
        if self.max_inflight_bytes is not None:
            return self.max_inflight_bytes
        return INFLIGHT_MESSAGES * self.max_message_size

    @property
    def tls(self) -> bool:
        """True when the daemon serves TLS."""
        return bool(self.tls_cert)


def _instant(text: str) -> float:
    """An ISO 8601 time as epoch seconds (UTC when it names no zone)."""
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--accept-unsigned-metas-until: {text!r} is not an ISO 8601 time "
                         "(e.g. 2026-12-31T00:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
