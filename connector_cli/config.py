"""Frozen configuration built once by the CLI and handed to the core."""

from __future__ import annotations

from typing import Optional

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


class ServerConfig(Record):
    """How `flyte-connector serve` listens and runs connector code.

    `port` 0 binds an ephemeral port. `metrics_port` None disables the Prometheus endpoint
    and 0 binds an ephemeral one (the CLI maps `--metrics-port 0` to None). TLS is on when
    `tls_cert` and `tls_key` are set; `tls_client_ca` additionally requires client
    certificates signed by that CA (mTLS). `grace_period` is how long in-flight requests
    may run after a shutdown signal. `meta_key_file` (and `previous_meta_key_file` while
    rotating) hold the key that signs resource meta; without one, a key generated once in
    `state_dir` (default: `connector_cli.signing.default_state_dir()`) is used. `timeout`
    (seconds) shuts the daemon down by itself after that long, as the Flyte SDK server's
    `--timeout` does (for tests). `max_message_size` bounds one gRPC message;
    `max_inflight_bytes` bounds what large requests hold together (see `inflight_budget`).
    `worker_state` is set only in the worker processes of `serve --processes N`: the port is
    shared (SO_REUSEPORT) and metrics and readiness go to that directory for the
    supervising parent instead of an HTTP endpoint.
    """

    __slots__ = (
        "host", "port", "metrics_port", "workers", "grace_period", "tls_cert", "tls_key",
        "tls_client_ca", "max_message_size", "meta_key_file", "previous_meta_key_file",
        "state_dir", "timeout", "max_inflight_bytes", "worker_state",
    )
    host: str
    port: int
    metrics_port: Optional[int]
    workers: int
    grace_period: float
    tls_cert: Optional[str]
    tls_key: Optional[str]
    tls_client_ca: Optional[str]
    max_message_size: int
    meta_key_file: Optional[str]
    previous_meta_key_file: Optional[str]
    state_dir: Optional[str]
    timeout: Optional[float]
    max_inflight_bytes: Optional[int]
    worker_state: Optional[str]

    def __init__(
        self, host: str = "::", port: int = 8000, metrics_port: Optional[int] = 9090,
        workers: int = 32, grace_period: float = 25.0, tls_cert: Optional[str] = None,
        tls_key: Optional[str] = None, tls_client_ca: Optional[str] = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, meta_key_file: Optional[str] = None,
        previous_meta_key_file: Optional[str] = None, state_dir: Optional[str] = None,
        timeout: Optional[float] = None, max_inflight_bytes: Optional[int] = None,
        worker_state: Optional[str] = None,
    ) -> None:
        self._set(
            host=host, port=port, metrics_port=metrics_port, workers=workers,
            grace_period=grace_period, tls_cert=tls_cert, tls_key=tls_key,
            tls_client_ca=tls_client_ca, max_message_size=max_message_size,
            meta_key_file=meta_key_file, previous_meta_key_file=previous_meta_key_file,
            state_dir=state_dir, timeout=timeout, max_inflight_bytes=max_inflight_bytes,
            worker_state=worker_state,
        )
        self._check()

    def _check(self) -> None:
        if self.workers < 1:
            raise UsageError(f"workers must be at least 1, got {self.workers}")
        if self.grace_period < 0:
            raise UsageError(f"grace_period must not be negative, got {self.grace_period}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise UsageError("TLS needs both a certificate and a key (--tls-cert and --tls-key)")
        if self.max_inflight_bytes is not None and self.max_inflight_bytes < 1:
            raise UsageError("max_inflight_bytes must be positive")
        if self.tls_client_ca and not self.tls_cert:
            raise UsageError("--tls-client-ca (mTLS) needs --tls-cert and --tls-key as well")

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
