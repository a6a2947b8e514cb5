"""Signed resource meta: the daemon vouches for the job handles it hands out.

The Flyte backend replays `resource_meta` bytes verbatim, but anyone who can reach the
gRPC port can send bytes of their own. A connector whose meta names host-local state (a
process id, a directory) sets `sign_resource_meta = True`; the dispatcher then wraps the
bytes `create` returned as

    fcm1.<key id>.<HMAC-SHA256, base64url>.<the connector's own bytes>

and checks that wrapper on every later call before the connector sees anything. The MAC
covers the task type, its version and the bytes, so a handle of one connector is not
accepted by another. Keys come from files (`serve --meta-key-file`, and
`--previous-meta-key-file` while rotating); `flyte-connector test` in-process signs with
a key made for the run.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from connector_cli.errors import ResourceMetaError, StartupError, UsageError

logger = logging.getLogger(__name__)

VERSION = b"fcm1"
MIN_KEY_BYTES = 32
KEY_FILE_NAME = "meta-signing.key"
STATE_DIR_ENV = "FLYTE_CONNECTOR_STATE_DIR"
_SEP = b"."
_KID_LEN = 8
_MAC_LEN = 43  # base64url of 32 bytes, no padding
_HEADER_LEN = len(VERSION) + 1 + _KID_LEN + 1 + _MAC_LEN + 1


def key_id(key: bytes) -> str:
    """A short public name for a key (a hash prefix), so a rotated key is recognised."""
    return hashlib.sha256(b"flyte-connector meta key id\0" + key).hexdigest()[:_KID_LEN]


class MetaSigner:
    """Signs with `key`; verifies with `key` or any of `previous` (key rotation)."""

    def __init__(self, key: bytes, previous: Sequence[bytes] = ()) -> None:
        for candidate in (key, *previous):
            if len(candidate) < MIN_KEY_BYTES:
                raise ValueError(f"a meta signing key needs at least {MIN_KEY_BYTES} bytes")
        self._key = key
        self._kid = key_id(key).encode()
        self._keys = {key_id(k).encode(): k for k in (*previous, key)}

    @classmethod
    def ephemeral(cls) -> MetaSigner:
        """A signer with a fresh random key: handles are valid for this process only."""
        return cls(secrets.token_bytes(32))

    @property
    def key_id(self) -> str:
        """The id of the signing key (not secret)."""
        return self._kid.decode()

    def sign(self, task_type: str, version: int, payload: bytes) -> bytes:
        """Wrap a connector's meta bytes for `task_type` v`version`."""
        mac = _mac(self._key, task_type, version, payload)
        return _SEP.join((VERSION, self._kid, mac, payload))

    def verify(self, task_type: str, version: int, data: bytes) -> bytes:
        """The connector's bytes inside a wrapper this daemon made, else `ResourceMetaError`."""
        if not data.startswith(VERSION + _SEP) or len(data) < _HEADER_LEN:
            raise ResourceMetaError(
                "resource_meta is not a signed handle from this connector daemon "
                "(forged, truncated or from elsewhere)"
            )
        kid, mac = data[5 : 5 + _KID_LEN], data[6 + _KID_LEN : 6 + _KID_LEN + _MAC_LEN]
        if data[5 + _KID_LEN : 6 + _KID_LEN] != _SEP or data[_HEADER_LEN - 1 : _HEADER_LEN] != _SEP:
            raise ResourceMetaError("resource_meta is not a well-formed signed handle")
        key = self._keys.get(kid)
        if key is None:
            raise ResourceMetaError(
                "resource_meta was signed with a key this daemon does not have "
                "(another deployment, or a key rotated out)"
            )
        payload = data[_HEADER_LEN:]
        if not hmac.compare_digest(mac, _mac(key, task_type, version, payload)):
            raise ResourceMetaError(
                "resource_meta signature does not match (tampered, or issued for another "
                "task type)"
            )
        return payload


def _mac(key: bytes, task_type: str, version: int, payload: bytes) -> bytes:
    message = b"\0".join((VERSION, task_type.encode(), str(version).encode(), payload))
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=")


def unsigned_payload(data: bytes) -> bytes:
    """The connector's bytes of a signed handle without checking it (for display only)."""
    if data.startswith(VERSION + _SEP) and len(data) >= _HEADER_LEN:
        return data[_HEADER_LEN:]
    return data


def read_key(path: str, what: str = "meta key file") -> bytes:
    """A key from a file (surrounding whitespace stripped); `StartupError` in one line when
    the file is unreadable or the key is too short."""
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        raise StartupError(f"cannot read the {what} {path!r}: {exc.strerror}") from None
    if len(key) < MIN_KEY_BYTES:
        raise StartupError(
            f"the {what} {path!r} holds {len(key)} bytes; use at least {MIN_KEY_BYTES} "
            "random bytes (e.g. `openssl rand -base64 48 > FILE`)"
        )
    return key


def default_state_dir() -> Path:
    """The daemon's own state directory: $FLYTE_CONNECTOR_STATE_DIR, else under
    $XDG_STATE_HOME (default ~/.local/state)."""
    from connector_cli.sdk.job_dirs import default_state_dir

    return default_state_dir("flyte-connector", STATE_DIR_ENV)


def generated_key(state_dir: Path) -> tuple[bytes, Path]:
    """This host's generated key (made once, mode 0600) for a daemon given no key file.

    The key is written to a temporary file and linked into place, so a daemon starting at
    the same moment (another `--processes` worker) reads a whole key or makes none."""
    from connector_cli.sdk.job_dirs import private_dir

    try:
        private_dir(state_dir, "state directory")
    except UsageError as exc:
        raise StartupError(f"{exc} (or pass --meta-key-file)") from None
    path = state_dir / KEY_FILE_NAME
    if path.exists():
        return _existing_key(path), path
    try:
        fd, temporary = tempfile.mkstemp(prefix=".meta-key-", dir=state_dir)
    except OSError as exc:
        raise StartupError(
            f"cannot create a meta signing key in {str(state_dir)!r}: {exc.strerror}; "
            "pass --meta-key-file"
        ) from None
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        os.link(temporary, path)
    except FileExistsError:
        pass  # made by a daemon starting at the same moment: use that one
    except OSError as exc:
        raise StartupError(
            f"cannot create a meta signing key in {str(state_dir)!r}: {exc.strerror}; "
            "pass --meta-key-file"
        ) from None
    finally:
        os.unlink(temporary)
    return _existing_key(path), path


def _existing_key(path: Path) -> bytes:
    try:
        info = path.lstat()
    except OSError as exc:
        raise StartupError(f"cannot read the meta key file {str(path)!r}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077 or info.st_uid != os.getuid():
        raise StartupError(
            f"the generated meta key file {str(path)!r} must be a regular file owned by this "
            "user with mode 0600; fix it or remove it"
        )
    return read_key(str(path), "generated meta key file")


def load_signer(
    key_file: Optional[str],
    previous_key_file: Optional[str],
    needed: bool,
    state_dir: Optional[str] = None,
) -> Optional[MetaSigner]:
    """The daemon's signer from its options; None when no key is given and no connector
    signs. Without a key file the host's generated key is used, with a warning."""
    previous = [read_key(previous_key_file, "previous meta key file")] if previous_key_file else []
    if key_file:
        return MetaSigner(read_key(key_file), previous)
    if previous:
        raise StartupError("--previous-meta-key-file needs --meta-key-file (the current key)")
    if not needed:
        return None
    key, path = generated_key(Path(state_dir) if state_dir else default_state_dir())
    logger.warning(
        "no --meta-key-file: signing resource_meta with the key generated in %s; other "
        "replicas do not share it, so give every replica the same key file", path,
    )
    return MetaSigner(key)
