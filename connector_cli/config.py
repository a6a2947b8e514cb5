"""Frozen configuration built once by the CLI and handed to the core."""

from __future__ import annotations

import dataclasses
from typing import Optional

from connector_cli.errors import UsageError


@dataclasses.dataclass(frozen=True)
class DiscoveryConfig:
    """Which plugins to load: `plugins` None means every installed one, () means none."""

    modules: tuple[str, ...] = ()
    plugins: Optional[tuple[str, ...]] = None


DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """How `flyte-connector serve` listens and runs connector code.

    `port` 0 binds an ephemeral port. `metrics_port` None disables the Prometheus endpoint
    and 0 binds an ephemeral one (the CLI maps `--metrics-port 0` to None). TLS is on when
    `tls_cert` and `tls_key` are set; `tls_client_ca` additionally requires client
    certificates signed by that CA (mTLS). `grace_period` is how long in-flight requests
    may run after a shutdown signal. `worker_state` is set only in the worker processes of
    `serve --processes N`: the port is shared (SO_REUSEPORT) and metrics and readiness go to
    that directory for the supervising parent instead of an HTTP endpoint.
    """

    host: str = "::"
    port: int = 8000
    metrics_port: Optional[int] = 9090
    workers: int = 32
    grace_period: float = 25.0
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    tls_client_ca: Optional[str] = None
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    worker_state: Optional[str] = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise UsageError(f"workers must be at least 1, got {self.workers}")
        if self.grace_period < 0:
            raise UsageError(f"grace_period must not be negative, got {self.grace_period}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise UsageError("TLS needs both a certificate and a key (--tls-cert and --tls-key)")
        if self.tls_client_ca and not self.tls_cert:
            raise UsageError("--tls-client-ca (mTLS) needs --tls-cert and --tls-key as well")

    @property
    def tls(self) -> bool:
        """True when the daemon serves TLS."""
        return bool(self.tls_cert)
