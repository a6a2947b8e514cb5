"""Loaded by a Python process whose PYTHONPATH starts with this folder: records every
socket connect and name lookup that is not on loopback to the file NET_AUDIT_LOG, so a
test can prove that a daemon and the libraries it hosts stayed on this machine."""

from __future__ import annotations

import ipaddress
import os
import sys

_LOG = os.environ.get("NET_AUDIT_LOG")
_LOCAL_NAMES = {"localhost", "ip6-localhost", ""}


def _local(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str) or host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _hook(event: str, args: tuple) -> None:
    if event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple) and not _local(address[0]):
            _record(f"connect {address[0]}:{address[1]}")
    elif event == "socket.getaddrinfo" and not _local(args[0]):
        _record(f"getaddrinfo {args[0]!r}")


def _record(line: str) -> None:
    with open(_LOG, "a") as f:  # type: ignore[arg-type]
        f.write(line + "\n")


if _LOG:
    sys.addaudithook(_hook)
