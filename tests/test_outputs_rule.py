"""The one rule for outputs (docs/writing-a-connector.md, "Outputs"): `get`'s values go out
by their Python type (GetTask carries no interface, so no server can do otherwise), and
`test` and the kit read them against the declared interface exactly as Flyte does: an int
where a float is declared reads as that float, a string for an enum must be one of its
values, anything else fails the run with one line naming the output."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import pytest
from flyteidl2.core.execution_pb2 import TaskExecution

from connector_cli import AsyncConnector, Resource, ResourceMeta
from connector_cli.testing import make_template, registry_with, run_task, serve_in_background


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class GivenMeta(ResourceMeta):
    outputs: dict[str, Any] = field(default_factory=dict)


class Given(AsyncConnector):
    """Returns, on the first `get`, the outputs its `returns` input names."""

    task_type_name = "given"
    metadata_type = GivenMeta

    async def create(self, task_template: Any, output_prefix: str, inputs: Any = None,
                     **kwargs: Any) -> GivenMeta:
        return GivenMeta(outputs=dict((inputs or {}).get("returns") or {}))

    async def get(self, resource_meta: GivenMeta, **kwargs: Any) -> Resource:
        return Resource(phase=TaskExecution.SUCCEEDED, outputs=resource_meta.outputs)

    async def delete(self, resource_meta: GivenMeta, **kwargs: Any) -> None:
        return None


def template(kind: Any) -> Any:
    return make_template("given", inputs={"returns": dict}, outputs={"value": kind})


@pytest.mark.parametrize(("kind", "returned", "read"), [
    (float, 1, 1.0),            # Flyte reads an integer literal for a float output
    (float, 2.5, 2.5),
    (Colour, "red", "red"),     # an enum's value as a string
    (int, 3, 3),
])
async def test_what_flyte_reads_is_what_the_run_shows(kind: Any, returned: Any, read: Any) -> None:
    async with serve_in_background(registry_with(Given())) as daemon:
        served = await run_task(daemon, template(kind), {"returns": {"value": returned}})
    local = await run_task(Given(), template(kind), {"returns": {"value": returned}})
    for result in (served, local):
        assert result.status == "succeeded", result.error
        assert result.output_values == {"value": read} and type(result.output_values["value"]) is type(read)
    assert served.outputs == local.outputs  # the same literal in-process and served


@pytest.mark.parametrize(("kind", "returned", "why"), [
    (int, "3", "output 'value': expected integer, got a string literal"),
    (int, 1.5, "output 'value': expected integer, got a float literal"),
    (Colour, "green", "output 'value': expected one of 'red', 'blue', got 'green'"),
    (float, "1.0", "output 'value': expected float, got a string literal"),
])
async def test_a_mismatch_fails_the_run_naming_the_output(kind: Any, returned: Any, why: str) -> None:
    result = await run_task(Given(), template(kind), {"returns": {"value": returned}})
    assert (result.status, result.phase) == ("failed", "SUCCEEDED")
    assert result.error == f"SUCCEEDED but {why}; Flyte would fail this task"
