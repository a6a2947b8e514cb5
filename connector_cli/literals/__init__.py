"""Flyte literals <-> Python values <-> JSON, guided by the task's declared interface.

The server converts `flyteidl2.task.Inputs` to Python values for `create` and a
connector's `Resource.outputs` back to `Outputs`; the `test` command converts an
`inputs.json` object. Converters are compiled once per LiteralType and cached, so the
hot path does no per-call type inspection. Every failure is a `LiteralError` naming the
input and the path inside it: `input 'rows[3].when': expected a datetime (ISO 8601), ...`.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any, Callable

from flyteidl2.core.interface_pb2 import TypedInterface, VariableMap
from flyteidl2.core.literals_pb2 import Literal
from flyteidl2.core.types_pb2 import LiteralType, SimpleType
from flyteidl2.task.common_pb2 import Inputs, Outputs

from connector_cli.errors import LiteralError
from connector_cli.literals._cache import CompiledCache
from connector_cli.literals._decode import READERS, Reader, read_untyped
from connector_cli.literals._encode import WRITERS, Writer, as_record, write_inferred
from connector_cli.literals._infer import infer
from connector_cli.literals._types import type_name
from connector_cli.literals._values import (
    FlyteDirectory,
    FlyteFile,
    Mismatch,
    StructuredDataset,
    format_datetime,
    format_duration,
    got,
)

__all__ = [
    "FlyteDirectory",
    "FlyteFile",
    "StructuredDataset",
    "infer_literal_type",
    "inputs_to_python",
    "json_to_inputs",
    "literal_to_python",
    "literal_type_of",
    "outputs_to_proto",
    "python_to_literal",
    "to_json",
]


def _error(role: str, name: str, exc: Mismatch) -> LiteralError:
    where = (name + "".join(exc.path)).lstrip(".") if name else "".join(exc.path).lstrip(".")
    if where:
        return LiteralError(f"{role} '{where}': {exc.message}")
    return LiteralError(f"{role}: {exc.message}")


def _variables(varmap: VariableMap) -> dict[str, LiteralType]:
    return {entry.key: entry.value.type for entry in varmap.variables}


_INPUT_READERS: CompiledCache[dict[str, Reader]] = CompiledCache(
    lambda vm: {k: READERS.get(t) for k, t in _variables(vm).items()}, size=256, memo=True
)
_WRITER_TABLES: CompiledCache[dict[str, tuple[LiteralType, Writer]]] = CompiledCache(
    lambda vm: {k: (t, WRITERS.get(t)) for k, t in _variables(vm).items()}, size=256
)


_NO_TABLE: dict[str, tuple[LiteralType, Writer]] = {}


def literal_to_python(literal: Literal, literal_type: LiteralType | None = None,
                      name: str = "", *, role: str = "input") -> Any:
    """One literal as a Python value, checked against `literal_type` when given."""
    read = READERS.get(literal_type) if literal_type is not None else read_untyped
    try:
        return read(literal)
    except Mismatch as exc:
        raise _error(role, name, exc) from None


def python_to_literal(value: Any, literal_type: LiteralType | None = None,
                      name: str = "", *, role: str = "value") -> Literal:
    """A Python (or JSON) value as a Literal of `literal_type`, inferred when not given.

    A ready `Literal` is returned untouched.
    """
    if isinstance(value, Literal):
        return value
    write = WRITERS.get(literal_type) if literal_type is not None else write_inferred
    literal = Literal()
    try:
        write(value, literal)
    except Mismatch as exc:
        raise _error(role, name, exc) from None
    return literal


def inputs_to_python(inputs: Inputs | None,
                     interface: TypedInterface | None = None) -> dict[str, Any]:
    """Task inputs keyed by name; declared inputs use their interface types."""
    if inputs is None:
        return {}
    readers = _INPUT_READERS.get(interface.inputs) if interface is not None else {}
    values: dict[str, Any] = {}
    for named in inputs.literals:
        name = named.name
        if name in values:
            raise LiteralError(f"input '{name}' appears more than once")
        try:
            values[name] = readers.get(name, read_untyped)(named.value)
        except Mismatch as exc:
            raise _error("input", name, exc) from None
    return values


def outputs_to_proto(outputs: Mapping[str, Any] | Outputs | None,
                     interface: TypedInterface | None = None) -> Outputs | None:
    """A connector's outputs as `Outputs`: declared types where known, inferred otherwise.

    Values may be plain Python values or ready Literals; a ready `Outputs` passes through.
    """
    if outputs is None or isinstance(outputs, Outputs):
        return outputs
    if not isinstance(outputs, Mapping):
        raise LiteralError(
            "outputs must be a dict of output name -> value or a flyteidl2 Outputs, "
            f"got {got(outputs)}"
        )
    message = Outputs()
    write_outputs(outputs, interface, message)
    return message


def write_outputs(outputs: Mapping[str, Any], interface: TypedInterface | None,
                  message: Outputs) -> None:
    """`outputs_to_proto` into an existing (empty) `message`, with no copy: the GetTask
    response's own `outputs` field."""
    table = _WRITER_TABLES.get(interface.outputs) if interface is not None else _NO_TABLE
    if table:
        _check_names("output", outputs, table, lambda n: _accepts_none(table[n][0]))
    for name, value in outputs.items():
        named = message.literals.add()
        named.name = name
        if isinstance(value, Literal):
            named.value.CopyFrom(value)
            continue
        write = table[name][1] if name in table else write_inferred
        try:
            write(value, named.value)
        except Mismatch as exc:
            raise _error("output", name, exc) from None
    for name, (_, write) in table.items():
        if name not in outputs:
            named = message.literals.add()
            named.name = name
            write(None, named.value)


def _check_names(role: str, given: Mapping[str, Any], declared: Mapping[str, Any],
                 may_omit: Callable[[str], bool], fix: str = "", none: str = "(none)") -> None:
    """Names in `given` that `declared` lacks, and declared ones missing from `given`
    that `may_omit` does not excuse, are errors; `fix` ends the missing-names message."""
    unknown = [n for n in given if n not in declared]
    if unknown:
        known = ", ".join(declared) or none
        raise LiteralError(f"unknown {role}{'s' if len(unknown) > 1 else ''} "
                           f"{', '.join(map(repr, unknown))}; {_known_label(role)}: {known}")
    missing = [n for n in declared if n not in given and not may_omit(n)]
    if missing:
        many = len(missing) > 1
        raise LiteralError(f"missing {role}{'s' if many else ''} "
                           + ", ".join(f"'{n}' ({type_name(declared[n][0])})" for n in missing)
                           + fix.format(it="them" if many else "it"))


def _known_label(role: str) -> str:
    """'known inputs' (what inputs.json may name) or 'declared outputs'."""
    return "known inputs" if role == "input" else f"declared {role}s"


def _accepts_none(lt: LiteralType) -> bool:
    if lt.WhichOneof("type") == "union_type":
        return any(_accepts_none(v) for v in lt.union_type.variants)
    return lt.WhichOneof("type") == "simple" and lt.simple == SimpleType.NONE


def json_to_inputs(data: Mapping[str, Any], interface: TypedInterface | None,
                   defaults: Mapping[str, Literal] | None = None) -> Inputs:
    """An `inputs.json` object as `Inputs`, typed by the interface; defaults fill gaps."""
    if not isinstance(data, Mapping):
        raise LiteralError(f"inputs must be a JSON object of input name -> value, got {got(data)}")
    table = _WRITER_TABLES.get(interface.inputs) if interface is not None else {}
    defaults = defaults or {}
    if interface is not None:
        _check_names("input", data, table, defaults.__contains__,
                     " with no default; add {it} to the inputs", "(the task declares none)")
    inputs = Inputs()
    for name in [*table, *(n for n in data if n not in table)]:
        named = inputs.literals.add()
        named.name = name
        if name not in data:
            named.value.CopyFrom(defaults[name])
            continue
        write = table[name][1] if name in table else write_inferred
        try:
            write(data[name], named.value)
        except Mismatch as exc:
            raise _error("input", name, exc) from None
    return inputs


def infer_literal_type(value: Any) -> LiteralType:
    """The LiteralType for an example value: bool before int, uniform lists, str-keyed maps."""
    try:
        return infer(value)
    except Mismatch as exc:
        raise _error("value", "", exc) from None


def literal_type_of(spec: Any) -> LiteralType:
    """The LiteralType for a Python type (`int`, `list[str]`, `Optional[FlyteFile]`, an Enum
    or dataclass), a ready `LiteralType`, or an example value (inferred)."""
    from connector_cli.literals._annotations import literal_type_of as of_annotation

    return of_annotation(spec, infer_literal_type)


def to_json(value: Any) -> Any:
    """A value from `literal_to_python` as JSON-native data, in the form `json_to_inputs` reads."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (FlyteFile, FlyteDirectory, StructuredDataset)):
        return {"uri": value.uri, "format": value.format} if value.format else value.uri
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(v) for v in value]
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    is_record = dataclasses.is_dataclass(value) or hasattr(value, "model_dump")
    record = as_record(value) if is_record else None
    if record is not None:
        return to_json(record)
    return str(value)
