"""Secrets a request carries: bounded, and masked in everything said while serving it.

`activate(secrets)` checks the bounds (`MAX_SECRETS`, `MAX_SECRET_BYTES`; configs have
`MAX_CONFIGS`, see `check_configs`) and makes a
`SecretMasker` current for the rest of the calling task (a context variable: each RPC is
its own task, and plain-`def` connector methods run with a copy of it). `MaskingFilter`,
installed on the daemon's log handler, masks every record produced while one is current,
the connector's own `logging` calls included; `mask_resource` masks GetTask's text fields.
Nothing here runs for a request without secrets.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from typing import Any, Iterable, Mapping, Optional

from connector_cli.errors import UsageError
from connector_cli.sdk.secrets import MASK

MAX_SECRETS = 100
MAX_SECRET_BYTES = 256 * 1024
MAX_CONFIGS = 1000
MIN_MASKED_LENGTH = 4

_CURRENT: ContextVar[Optional[SecretMasker]] = ContextVar("connector_secret_masker", default=None)


def check_secrets(secrets: Mapping[str, str]) -> None:
    """Refuse more secrets, or more bytes of them, than any real task needs (the masker's
    work grows with both). Checks the count before touching any value."""
    if len(secrets) > MAX_SECRETS:
        raise UsageError(
            f"connection carries {len(secrets)} secrets; at most {MAX_SECRETS} are accepted"
        )
    size = sum(len(name) + len(value) for name, value in secrets.items())
    if size > MAX_SECRET_BYTES:
        raise UsageError(
            f"connection secrets total {size} bytes; at most {MAX_SECRET_BYTES} are accepted"
        )


def check_configs(configs: Mapping[str, str]) -> None:
    """Refuse more configs than any real task has: each one becomes a keyword argument."""
    if len(configs) > MAX_CONFIGS:
        raise UsageError(
            f"connection carries {len(configs)} configs; at most {MAX_CONFIGS} are accepted"
        )


def activate(secrets: Mapping[str, str]) -> SecretMasker:
    """Check `secrets` and make their masker current for the calling task."""
    check_secrets(secrets)
    masker = SecretMasker(secrets.values())
    _CURRENT.set(masker if masker else None)
    return masker


def current() -> Optional[SecretMasker]:
    """The masker of the request being served here, or None."""
    return _CURRENT.get()


class MaskingFilter(logging.Filter):
    """Masks a record's message, traceback and stack while a request's secrets are current."""

    def filter(self, record: logging.LogRecord) -> bool:
        masker = _CURRENT.get()
        if masker is None:
            return True
        record.msg, record.args = masker.text(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = masker.text(record.exc_text)
        if record.stack_info:
            record.stack_info = masker.text(record.stack_info)
        return True


def mask_resource(resource: Any, masker: SecretMasker) -> None:
    """Mask the text GetTask shows users: `message`, log link names and URIs, `custom_info`."""
    if resource.message:
        resource.message = masker.text(resource.message)
    for link in resource.log_links:
        link.name, link.uri = masker.text(link.name), masker.text(link.uri)
    if resource.HasField("custom_info"):
        from google.protobuf.json_format import MessageToDict

        data = MessageToDict(resource.custom_info)
        masked = masker.data(data)
        if masked != data:
            resource.custom_info.Clear()
            resource.custom_info.update(masked)


class SecretMasker:
    """Replaces secret values in text (and nested JSON data) with a mask before printing.

    Each value is searched for as written and in its common escaped forms (Python `repr`,
    JSON, `unicode_escape`), so a secret with a quote, backslash or newline is masked in a
    traceback or JSON log too. Values shorter than `MIN_MASKED_LENGTH` are not searched
    for, so a secret like "1" does not mask every digit. Masking is plain substring
    replacement (no regex to compile), longest first; callers bound how many values come in.
    """

    def __init__(self, values: Iterable[str]) -> None:
        forms = {form for v in values if len(v) >= MIN_MASKED_LENGTH for form in _forms(v)}
        self._needles = sorted(forms, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._needles)

    def text(self, value: str) -> str:
        """`value` with every secret replaced by the mask."""
        for needle in self._needles:
            if needle in value:
                value = value.replace(needle, MASK)
        return value

    def data(self, value: Any) -> Any:
        """JSON-like data with every string (and key) masked."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value


def _forms(value: str) -> set[str]:
    """`value` and how it looks inside a repr, a JSON string or an escaped log line."""
    escaped = value.encode("unicode_escape").decode("ascii")
    forms = {
        value, escaped, repr(value)[1:-1],
        escaped.replace("'", "\\'"), escaped.replace('"', '\\"'),
        json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
        json.dumps(repr(value)[1:-1])[1:-1],
    }
    return {form for form in forms if len(form) >= MIN_MASKED_LENGTH}
