"""The rules both foreign-SDK adapters share (`connector_cli.adoption`)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.core.execution_pb2 import TaskExecution

from connector_cli.adoption import Adopted, UndefinedAsQueued


def test_undefined_is_reported_as_queued_and_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    queued = UndefinedAsQueued("Slow Connector")
    with caplog.at_level(logging.WARNING, logger="connector_cli.adoption"):
        first = queued(pb.Resource(phase=TaskExecution.UNDEFINED, message="not yet"))
        second = queued(pb.Resource(phase=TaskExecution.UNDEFINED))
    assert first.phase == second.phase == TaskExecution.QUEUED
    assert first.message == "not yet"
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "'Slow Connector' returned phase UNDEFINED" in warnings[0]


@pytest.mark.parametrize("phase", [TaskExecution.QUEUED, TaskExecution.RUNNING,
                                   TaskExecution.SUCCEEDED, TaskExecution.FAILED])
def test_other_phases_pass_unchanged(phase: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert UndefinedAsQueued("c")(pb.Resource(phase=phase)).phase == phase
    assert not caplog.records


class _Inner:
    name = "Picky Connector"


class _Served(Adopted):
    async def create(self, task_template: Any, output_prefix: str, inputs: Any = None,
                     task_execution_metadata: Any = None, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def get(self, resource_meta: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def delete(self, resource_meta: Any, **kwargs: Any) -> None:
        raise NotImplementedError


async def _no_literal_for(result: Any) -> Any:
    raise TypeError(f"no Flyte type for {type(result).__name__}")


async def _as_succeeded(result: Any) -> Any:
    return pb.Resource(phase=TaskExecution.SUCCEEDED, message=str(result))


async def test_outputs_the_sdk_cannot_convert_fail_the_task_saying_why(
        caplog: pytest.LogCaptureFixture) -> None:
    served = _Served(_Inner(), "picky", 0)
    with caplog.at_level(logging.ERROR, logger="connector_cli.adoption"):
        failed = await served._converted(_no_literal_for, object(), pb.Resource)
    assert failed.phase == TaskExecution.FAILED
    assert failed.message == ("the connector's result cannot be converted to Flyte literals: "
                              "no Flyte type for object")
    assert "Picky Connector returned a Resource that cannot be converted" in caplog.text
    done = await served._converted(_as_succeeded, "fine", pb.Resource)
    assert (done.phase, done.message) == (TaskExecution.SUCCEEDED, "fine")
    assert served.own_loop and served.raw_inputs and served.name == "Picky Connector"
