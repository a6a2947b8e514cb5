"""What the daemon takes on at once: connections, request bodies, open files, and which
connectors `serve --processes` may not share a port with.

The numbers behind the grpc options of `daemon.server` and the `daemon.bodies` gate
(issue 28: idle connections past the fd limit took health down; unfinished bodies were
held without bound; a shell job could join the shared port of `--processes`).
"""

from __future__ import annotations

from connector_cli.config import ServerConfig
from connector_cli.errors import StartupError
from connector_cli.sdk.registry import ConnectorRegistry

FD_RESERVE = 128
# A real client sends the HTTP/2 preface (and finishes TLS) within milliseconds in-cluster;
# while idle connections fill the limit, new ones (a kubelet probe's) are refused until
# this sheds them.
HANDSHAKE_MS = 1_000
IDLE_MS = 300_000  # the backend's channel reconnects after a GOAWAY; pings are not activity


def connection_limit() -> int:
    """Connections the daemon accepts at once: its file descriptor limit (raised to the
    hard limit at start-up) less `FD_RESERVE` for jobs, files and health's own connections."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 16
    return max(16, soft - max(FD_RESERVE, soft // 4))


def raise_fd_limit() -> None:
    """Raise the soft limit on open files to the hard one: each connection takes one."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and soft != resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def body_slots(config: ServerConfig) -> int:
    """How many request bodies grpc may read at once: four times what the in-flight
    budget holds in whole messages (a small body holds its slot for microseconds)."""
    return max(4, 4 * config.inflight_budget // config.max_message_size)


def refuse_host_local(registry: ConnectorRegistry) -> None:
    """`serve --processes` shares the port with SO_REUSEPORT, which any process of the
    daemon's user can join: a job of a host-local connector (one that signs its metas,
    as shell and sql do) could bind the port and take the backend's connections."""
    local = sorted({r.connector.name for r in registry.registrations()
                    if r.connector.sign_resource_meta})
    if local:
        raise StartupError(
            f"--processes cannot serve host-local connectors ({', '.join(local)}): their "
            "jobs run as the daemon's user and could bind the shared port (SO_REUSEPORT) "
            "and receive the backend's calls; serve them with one process per pod "
            "(see docs/deploy.md)"
        )
