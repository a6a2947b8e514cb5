"""The rules both foreign-SDK adapters share (`connector_cli.adoption`)."""

from __future__ import annotations

import logging

import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.core.execution_pb2 import TaskExecution

from connector_cli.adoption import UndefinedAsQueued


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
