"""JSON and YAML as `flyte-connector test` reads them: a syntax error as one readable line,
and YAML aliases bounded (a "billion laughs" file must not grow to gigabytes)."""

from __future__ import annotations

import json
from typing import Any

from connector_cli.errors import UsageError


def json_error(exc: json.JSONDecodeError) -> str:
    """'JSON: <what> (line L, column C)' for a JSON syntax error."""
    return f"JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"


def yaml_error(exc: Exception) -> str:
    """'YAML: <what> (line L, column C)' for a PyYAML error, without its excerpt of the
    text or its `<unicode string>` stream name."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    text = problem or str(exc).splitlines()[0]
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"YAML: {text}{where}"


MAX_YAML_VALUES = 1_000_000


def safe_load_bounded(text: str) -> Any:
    """`yaml.safe_load`, refusing aliases that expand beyond `MAX_YAML_VALUES` values or
    refer to themselves (a "billion laughs" file grows to gigabytes once converted).

    Raises `UsageError` saying what is wrong and what to do; YAML errors pass through.
    """
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            _expanded_size(node, {}, set())
        except RecursionError:
            raise UsageError("YAML nested too deeply; flatten it") from None
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: Any, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values `node` becomes with every alias expanded (memoised per node)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise UsageError("a YAML alias refers to itself; write the value out")
    open_nodes.add(key)
    size = 1
    if isinstance(node.value, list):
        for item in node.value:
            parts = item if isinstance(item, tuple) else (item,)
            size += sum(_expanded_size(part, sizes, open_nodes) for part in parts)
            if size > MAX_YAML_VALUES:
                raise UsageError(
                    f"YAML aliases expand to more than {MAX_YAML_VALUES:,} values (an alias "
                    "bomb?); write the values out or use fewer aliases"
                )
    open_nodes.discard(key)
    sizes[key] = size
    return size
