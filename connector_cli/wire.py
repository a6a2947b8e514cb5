"""GetTask and CreateTask responses written straight as protobuf wire bytes.

The daemon answers these two RPCs far more often than any other, and building a response
message field by field costs more than the connector's own work. For the common shapes
(a `Resource` with a phase, a message and plain scalar outputs; a resource meta) the bytes
are put together here, in field-number order, so they are byte for byte what
`SerializeToString` gives for the same message (tested). Anything else (log links,
custom info, a ready `flyteidl2` Resource or Outputs, values that need conversion or
validation) returns None and goes through the message path in `connector_cli.dispatch`.

A named output of a small int, str, bool or None value is encoded once and kept in a
bounded table: GetTask is polled, and its outputs repeat.
"""

from __future__ import annotations

from typing import Any, Optional

from flyteidl2.core.execution_pb2 import TaskExecution

from connector_cli.errors import LiteralError
from connector_cli.sdk.connector import Resource

CACHE_ENTRIES = 4096
CACHE_STR_CHARS = 256
_CACHED_TYPES = frozenset({int, str, bool, type(None)})


def varint(value: int) -> bytes:
    """`value` as a protobuf varint (negative numbers as 64-bit two's complement)."""
    if 0 <= value < 0x80:
        return _SMALL[value]
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [bytes((n,)) for n in range(0x80)]


def _field(tag: bytes, data: bytes) -> bytes:
    """A length-delimited field: tag, length, bytes."""
    return tag + varint(len(data)) + data


def create_response(resource_meta: bytes) -> bytes:
    """`CreateTaskResponse(resource_meta=...)` (field 1) as wire bytes."""
    return _field(b"\x0a", resource_meta) if resource_meta else b""


_PHASES = {phase: b"\x28" + varint(phase) for phase in TaskExecution.Phase.values() if phase}


def get_response(resource: Any) -> Optional[bytes]:
    """`GetTaskResponse(resource=...)` as wire bytes, or None when `resource` needs the
    message path (anything but a plain `Resource` of phase, message and scalar outputs)."""
    if type(resource) is not Resource or resource.log_links or resource.custom_info:
        return None
    phase = _PHASES.get(resource.phase) if type(resource.phase) is int else None
    if phase is None:
        return None
    body = b""
    outputs = resource.outputs
    if outputs is not None:
        if type(outputs) is not dict:
            return None
        literals = _outputs(outputs)
        if literals is None:
            return None
        body = _field(b"\x12", literals)  # Resource.outputs = 2
    message = resource.message
    if message:
        if type(message) is not str:
            return None
        try:
            body += _field(b"\x1a", message.encode())  # Resource.message = 3
        except UnicodeEncodeError:
            return None
    return _field(b"\x0a", body + phase)  # phase = 5; GetTaskResponse.resource = 1


def _outputs(outputs: dict[str, Any]) -> Optional[bytes]:
    """`Outputs.literals` (field 1) for plain values, or None when one needs the message
    path (a conversion error there turns the resource into FAILED)."""
    parts = []
    for name, value in outputs.items():
        kind = type(value)
        key = (name, kind, value) if kind in _CACHED_TYPES else None
        part = _LITERALS.get(key) if key is not None else None
        if part is None:
            part = _named_literal(name, value)
            if part is None:
                return None
            if key is not None and _cacheable(value) and len(_LITERALS) < CACHE_ENTRIES:
                _LITERALS[key] = part
        parts.append(part)
    return b"".join(parts)


def _named_literal(name: str, value: Any) -> Optional[bytes]:
    """One entry of `Outputs.literals`: an `Outputs` holding only it serializes to exactly
    that entry."""
    from connector_cli.literals import outputs_to_proto

    try:
        return outputs_to_proto({name: value}).SerializeToString()  # type: ignore[union-attr]
    except (LiteralError, TypeError, ValueError):
        return None


def _cacheable(value: Any) -> bool:
    return type(value) is not str or len(value) <= CACHE_STR_CHARS


_LITERALS: dict[tuple[str, type, Any], bytes] = {}
