"""docs/literals.md cannot drift: its type table, error lines and example are executed."""

from __future__ import annotations

import json
import re
import runpy
from collections.abc import Callable

import pytest
from flyteidl2.core.literals_pb2 import Literal, LiteralOffloadedMetadata
from flyteidl2.core.types_pb2 import LiteralType, SimpleType
from flyteidl2.task.common_pb2 import Inputs, NamedLiteral

from connector_cli.errors import LiteralError
from connector_cli.literals import inputs_to_python, json_to_inputs, outputs_to_proto, to_json
from connector_cli.literals._types import type_name
from tests.conftest import REPO
from tests.helpers.literal_cases import (
    BOOL,
    COLOR,
    CSV_FILE,
    DATETIME,
    DIRECTORY,
    DURATION,
    FLOAT,
    INT,
    NONE,
    OPTIONAL_INT,
    PARQUET,
    STR,
    STRUCT,
    interface,
    list_of,
    map_of,
    prim,
)

DOC = (REPO / "docs" / "literals.md").read_text()
CATALOGUE = [INT, FLOAT, STR, BOOL, DATETIME, DURATION, NONE, list_of(INT), map_of(FLOAT), STRUCT,
             LiteralType(simple=SimpleType.BINARY), CSV_FILE, DIRECTORY, PARQUET, COLOR, OPTIONAL_INT]
TYPES = {type_name(t): t for t in CATALOGUE}


def table_rows() -> list[tuple[str, str, str]]:
    section = DOC.split("## Types", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip().strip("`").replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 3 and cells[0] not in ("Flyte type", "---"):
            rows.append((cells[0], cells[1], cells[2]))
    return rows


def test_table_covers_every_type() -> None:
    assert sorted(name for name, _, _ in table_rows()) == sorted(TYPES)


@pytest.mark.parametrize(("flyte", "python", "example"), table_rows(), ids=lambda v: str(v)[:30])
def test_table_row_converts_as_documented(flyte: str, python: str, example: str) -> None:
    iface = interface({"x": TYPES[flyte]})
    data = json.loads(example)
    value = inputs_to_python(json_to_inputs({"x": data}, iface), iface)["x"]
    assert type(value).__name__ == python
    again = json_to_inputs({"x": to_json(value)}, iface)
    assert inputs_to_python(again, iface)["x"] == value


def _offloaded() -> None:
    lit = Literal(offloaded_metadata=LiteralOffloadedMetadata(uri="s3://bucket/big.pb", size_bytes=2048))
    inputs_to_python(Inputs(literals=[NamedLiteral(name="table", value=lit)]))


TOUR = interface({"rows": list_of(map_of(DATETIME)), "timeout": DURATION, "source": CSV_FILE, "limit": INT})
GOOD = {"rows": [], "timeout": 1, "source": "s3://x", "limit": 1}
ERRORS: list[Callable[[], object]] = [
    lambda: json_to_inputs({**GOOD, "rows": [{}, {}, {}, {"when": "yesterday"}]}, TOUR),
    lambda: inputs_to_python(Inputs(literals=[NamedLiteral(name="limit", value=prim(string_value="x"))]),
                             interface({"limit": OPTIONAL_INT})),
    lambda: json_to_inputs({**GOOD, "limt": 1}, TOUR),
    lambda: json_to_inputs({k: v for k, v in GOOD.items() if k != "source"}, TOUR),
    lambda: outputs_to_proto({"ratio": "high"}, interface(outputs={"ratio": FLOAT})),
    _offloaded,
]


def test_documented_errors_are_the_real_messages() -> None:
    block = DOC.split("## Errors", 1)[1].split("```", 2)[1]
    documented = [line for line in block.splitlines() if line.strip()]
    produced = []
    for scenario in ERRORS:
        with pytest.raises(LiteralError) as info:
            scenario()
        produced.append(str(info.value))
    assert produced == documented


def test_tour_example_runs() -> None:
    runpy.run_path(str(REPO / "docs" / "examples" / "literals_tour.py"), run_name="__main__")
