"""The daemon's TLS: server credentials from `--tls-cert`, `--tls-key` and (for mutual TLS)
`--tls-client-ca`, checked at start-up so a bad file is one `Error:` line rather than a
failed handshake later."""

from __future__ import annotations

from pathlib import Path

import grpc

from connector_cli.config import ServerConfig
from connector_cli.errors import StartupError


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise StartupError(f"cannot read the {what} {path!r}: {exc.strerror}") from None


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials:
    """TLS (and with a client CA, mTLS) credentials; files are checked up front so a bad
    one is a start-up error rather than a failed handshake later."""
    import ssl

    assert config.tls_cert and config.tls_key
    cert, key = _read(config.tls_cert, "TLS certificate"), _read(config.tls_key, "TLS key")
    ca = _read(config.tls_client_ca, "client CA certificate") if config.tls_client_ca else None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (ssl.SSLError, ValueError) as exc:
        raise StartupError(
            f"the TLS certificate {config.tls_cert!r} and key {config.tls_key!r} are not a "
            f"valid PEM certificate and matching private key ({exc})"
        ) from None
    if ca is not None:
        try:
            context.load_verify_locations(cadata=ca.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise StartupError(
                f"the client CA {config.tls_client_ca!r} is not a PEM certificate ({exc})"
            ) from None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )
