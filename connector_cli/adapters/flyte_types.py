"""The Flyte type engine's per-call work for a Flyte SDK connector, done once where it can be.

The Flyte SDK's server (`c0`) converts every CreateTask's inputs and every GetTask's
outputs with its type engine: it guesses each input's Python type from its literal type
(trying every registered transformer), builds a `NativeInterface`, converts each value in
an asyncio task of its own, and for outputs builds an interface from the values' types and
converts each through the artifact and output-name machinery. Measured in-process
(bench/bench_flyte_adapter.py): 39 us for the two bench inputs, 53 us for the two bench
outputs, most of a GetTask's or CreateTask's CPU.

Here the same answers come cheaper, and only where they are certainly the same:
- inputs: per interface (its serialized `VariableMap`) the guessed types are kept, and when
  every input's type is `int`, `float`, `str` or `bool` served by the type engine's own
  transformer for it, a literal holding exactly that primitive is its value (what that
  transformer returns); the dict is in the order the Flyte SDK's `LiteralMap` yields (kept
  per set of names). Anything else (another type, another literal shape, a transformer
  registered in place of the type engine's own) goes through the type engine as `c0` does.
- outputs: an `int`, `str` or `bool` output served by the type engine's own transformer is
  converted by the type engine once per (name, value) and its encoded `NamedLiteral` kept
  in a bounded table (GetTask is polled; its outputs repeat). Any other value, custom info,
  or another transformer: the Flyte SDK's own `get_resource_proto`.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional

from flyte.types import TypeEngine
from flyte.types._type_engine import (
    BoolTransformer,
    FloatTransformer,
    IntTransformer,
    StrTransformer,
)
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.task import common_pb2

CACHE_ENTRIES = 4096
CACHE_STR_CHARS = 256
# The type engine's own transformers, and the Primitive field each reads when it is given
# exactly that field; a transformer registered in their place is always called.
_STOCK = {int: (IntTransformer, "integer"), float: (FloatTransformer, "float_value"),
          str: (StrTransformer, "string_value"), bool: (BoolTransformer, "boolean")}
_OUTPUT_TYPES = frozenset({int, str, bool})  # float is left out: -0.0 == 0.0 as a cache key


class _Interface:
    """An input interface's guessed types, and for each input the primitive field its
    value is read from and the transformer that makes that so (None: not all simple)."""

    __slots__ = ("types", "fields", "registry_size")

    def __init__(self, types: dict[str, Any], registry_size: int) -> None:
        self.types = types
        self.registry_size = registry_size
        fields: Optional[dict[str, tuple[str, Any]]] = {}
        for name, python_type in types.items():
            stock = _STOCK.get(python_type)
            if stock is None or TypeEngine.get_transformer(python_type) is not stock[0]:
                fields = None
                break
            fields[name] = (stock[1], stock[0])  # type: ignore[index]
        self.fields = fields


_INTERFACES: dict[bytes, Optional[_Interface]] = {}
_ORDERS: dict[tuple[str, ...], tuple[str, ...]] = {}
_OUTPUTS: dict[tuple[str, type, Any], bytes] = {}


def _interface(template: Any) -> Optional[_Interface]:
    """The kept `_Interface` of a template's inputs, or None when guessing a type fails (the
    full path then raises what `c0` raises)."""
    key = template.interface.inputs.SerializeToString()
    size = len(TypeEngine._REGISTRY)
    found = _INTERFACES.get(key)
    if found is not None and found.registry_size == size:
        return found
    try:
        types: dict[str, Any] = {
            entry.key: TypeEngine.guess_python_type(entry.value.type)
            for entry in template.interface.inputs.variables
        }
    except Exception:  # noqa: BLE001 - the full path raises it again, as c0 does
        return None
    found = _Interface(types, size)
    if len(_INTERFACES) >= CACHE_ENTRIES:
        _INTERFACES.clear()
    _INTERFACES[key] = found
    return found


def _order(names: tuple[str, ...]) -> tuple[str, ...]:
    """The order a `LiteralMap` built from `names` (in this order) iterates its keys: the
    order `c0` hands the inputs over in."""
    found = _ORDERS.get(names)
    if found is None:
        from flyteidl2.core.literals_pb2 import Literal, LiteralMap

        found = tuple(LiteralMap(literals={name: Literal() for name in names}).literals)
        if len(_ORDERS) >= CACHE_ENTRIES:
            _ORDERS.clear()
        _ORDERS[names] = found
    return found


def _simple_inputs(interface: _Interface, literals: Any) -> Optional[dict[str, Any]]:
    """The inputs' values when each is exactly the primitive its stock transformer reads."""
    fields = interface.fields
    if fields is None:
        return None
    registry = TypeEngine._REGISTRY
    types = interface.types
    values: dict[str, Any] = {}
    for named in literals:
        name = named.name
        spec = fields.get(name)
        if spec is None or name in values:
            return None
        field, transformer = spec
        literal = named.value
        if literal.WhichOneof("value") != "scalar":
            return None
        scalar = literal.scalar
        if scalar.WhichOneof("value") != "primitive" or \
                scalar.primitive.WhichOneof("value") != field or \
                registry.get(types[name]) is not transformer:
            return None
        values[name] = getattr(scalar.primitive, field)
    return {name: values[name] for name in _order(tuple(values))}


async def native_inputs(template: Any, inputs: Any) -> dict[str, Any]:
    """Inputs as the Flyte SDK's server hands them over: each input's Python type guessed
    from its literal type by Flyte's type engine, values converted by the same engine."""
    literals = inputs.literals if inputs is not None else ()
    interface = _interface(template)
    if interface is not None:
        if not literals:
            return {}
        found = _simple_inputs(interface, literals)
        if found is not None:
            return found
    return await _engine_inputs(template, inputs)


async def _engine_inputs(template: Any, inputs: Any) -> dict[str, Any]:
    """What `c0`'s CreateTask does, step for step."""
    from flyte._internal.runtime.convert import Inputs, convert_from_inputs_to_native
    from flyte.models import NativeInterface

    types: dict[str, Any] = {
        entry.key: (TypeEngine.guess_python_type(entry.value.type), inspect.Parameter.empty)
        for entry in template.interface.inputs.variables
    }
    interface = NativeInterface.from_types(inputs=types, outputs={})
    proto = inputs if inputs is not None else common_pb2.Inputs()
    result: dict[str, Any] = await convert_from_inputs_to_native(
        interface, Inputs(proto_inputs=proto)
    )
    return result


async def resource_proto(resource: Any) -> pb.Resource:
    """The Flyte SDK's `get_resource_proto(resource)`: the same message, its plain outputs
    from the table."""
    outputs = resource.outputs
    if outputs and type(outputs) is dict and not resource.custom_info:
        encoded = await _outputs(outputs)
        if encoded is not None:
            proto = pb.Resource(phase=resource.phase, message=resource.message,
                                log_links=resource.log_links)
            proto.outputs.MergeFromString(encoded)
            return proto
    from flyte.connectors._connector import get_resource_proto

    return await get_resource_proto(resource)


async def _outputs(outputs: dict[str, Any]) -> Optional[bytes]:
    """`Outputs.literals` as wire bytes, one kept entry per output (an `Outputs` holding
    only that output serializes to exactly its entry), or None for a value not kept."""
    registry = TypeEngine._REGISTRY
    parts = []
    for name, value in outputs.items():
        kind = type(value)
        if kind not in _OUTPUT_TYPES or (kind is str and len(value) > CACHE_STR_CHARS) or \
                registry.get(kind) is not _STOCK[kind][0]:
            return None
        key = (name, kind, value)
        part = _OUTPUTS.get(key)
        if part is None:
            try:
                part = await _engine_output(name, kind, value)
            except Exception:  # noqa: BLE001 - the full path fails it as c0 does
                return None
            if len(_OUTPUTS) >= CACHE_ENTRIES:
                _OUTPUTS.clear()
            _OUTPUTS[key] = part
        parts.append(part)
    return b"".join(parts)


async def _engine_output(name: str, kind: type, value: Any) -> bytes:
    """One output converted as `get_resource_proto` converts it."""
    from flyte._internal.runtime.convert import convert_from_native_to_outputs
    from flyte.models import NativeInterface

    interface = NativeInterface.from_types(inputs={}, outputs={name: kind})
    converted = await convert_from_native_to_outputs((value,), interface)
    data: bytes = converted.proto_outputs.SerializeToString()
    return data
