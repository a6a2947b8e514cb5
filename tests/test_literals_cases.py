"""The literal table (tests/helpers/literal_cases.py): every case reads, writes and round-trips."""

from __future__ import annotations

import pytest
from flyteidl2.task.common_pb2 import NamedLiteral

from connector_cli.literals import json_to_inputs, literal_to_python, python_to_literal, to_json
from tests.helpers.literal_cases import CASES, IDS, Case, interface


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_real_literal_reads_as_python(case: Case) -> None:
    assert literal_to_python(case.literal, case.type, "x") == case.python


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_python_writes_the_same_literal(case: Case) -> None:
    assert python_to_literal(case.python, case.type, "x") == case.literal


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_json_form_round_trips(case: Case) -> None:
    assert to_json(case.python) == case.json
    inputs = json_to_inputs({"x": case.json}, interface({"x": case.type}))
    assert list(inputs.literals) == [NamedLiteral(name="x", value=case.literal)]


@pytest.mark.parametrize("case", [c for c in CASES if "optional" not in c.id], ids=lambda c: c.id)
def test_untyped_literal_reads_by_what_it_holds(case: Case) -> None:
    expected = case.python
    if case.type.WhichOneof("type") == "enum_type":
        expected = "green"
    assert literal_to_python(case.literal) == expected
