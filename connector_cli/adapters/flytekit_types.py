"""flytekit's `Resource.to_flyte_idl` for plain outputs, its type engine's work done once.

flytekit's server converts every GetTask's outputs with its type engine: a transformer
looked up per value (with flytekit's lazy imports on each lookup), one asyncio task per
output, the literal models built and then their messages: 75 us of a GetTask's 105
in-process for the bench connector's two outputs. GetTask is polled, and its outputs
repeat.

Here the same message comes cheaper, and only where it is certainly the same: a
`Resource` of flytekit's own class with no `custom_info`, whose outputs are a dict of
`int`, `float`, `str` or `bool` values (exactly those types, each served by flytekit's own
transformer for it, registered under its type) gets each literal converted by flytekit's
engine once per (type, value) and kept in a bounded table; the `LiteralMap` and `Resource`
messages are built as `to_flyte_idl` builds them, in the same order. Anything else (other
values, a `LiteralMap`, a transformer registered in place of flytekit's, a subclass of
`Resource`) goes through `to_flyte_idl` itself.
"""

from __future__ import annotations

import struct
from typing import Any, Optional

from flyteidl.admin import agent_pb2 as v1
from flyteidl.core import literals_pb2
from flytekit.core.type_engine import (
    BoolTransformer,
    FloatTransformer,
    IntTransformer,
    StrTransformer,
    TypeEngine,
)
from flytekit.extend.backend.base_connector import Resource as KitResource

CACHE_ENTRIES = 4096
CACHE_STR_CHARS = 256
_STOCK = {int: IntTransformer, float: FloatTransformer, str: StrTransformer,
          bool: BoolTransformer}
_LITERALS: dict[tuple[type, Any], literals_pb2.Literal] = {}


async def resource_proto(result: Any) -> v1.Resource:
    """`await result.to_flyte_idl()`: the same message, plain outputs from the table."""
    if type(result) is KitResource and not result.custom_info:
        outputs = result.outputs
        if type(outputs) is dict and outputs:
            literals = await _literals(outputs)
            if literals is not None:
                return v1.Resource(phase=result.phase, message=result.message,
                                   log_links=result.log_links,
                                   outputs=literals_pb2.LiteralMap(literals=literals))
    proto: v1.Resource = await result.to_flyte_idl()
    return proto


async def _literals(outputs: dict[Any, Any]) -> Optional[dict[str, literals_pb2.Literal]]:
    """Each output's literal message, in the dict's order, or None when one is not plain."""
    registry = TypeEngine._REGISTRY
    out: dict[str, literals_pb2.Literal] = {}
    for name, value in outputs.items():
        kind = type(value)
        stock = _STOCK.get(kind)
        if stock is None or registry.get(kind) is not stock or type(name) is not str or \
                (kind is str and len(value) > CACHE_STR_CHARS):
            return None
        # a float by its bits: 0.0 == -0.0 and nan != nan as keys
        key = (kind, struct.pack("<d", value) if kind is float else value)
        literal = _LITERALS.get(key)
        if literal is None:
            try:
                literal = await _engine_literal(value)
            except Exception:  # noqa: BLE001 - to_flyte_idl raises it again, as flytekit does
                return None
            if len(_LITERALS) >= CACHE_ENTRIES:
                _LITERALS.clear()
            _LITERALS[key] = literal
        out[name] = literal
    return out


async def _engine_literal(value: Any) -> literals_pb2.Literal:
    """One value's literal message, converted as `to_flyte_idl` converts each output."""
    from flytekit import FlyteContext

    ctx = FlyteContext.current_context()
    literal_map = await TypeEngine.dict_to_literal_map_pb(ctx, {"value": value})
    assert literal_map is not None
    literal = literals_pb2.Literal()
    literal.CopyFrom(literal_map.literals["value"])
    return literal
