"""`log_page`, `metric` and `metrics_response`, and `--follow` over the pages they build."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import pytest
from flyteidl2.core.execution_pb2 import TaskExecution
from flyteidl2.logs.dataplane.payload_pb2 import LogLine

from connector_cli import AsyncConnector, Resource, ResourceMeta, log_page, metric, metrics_response
from connector_cli.run.runner import Run
from connector_cli.run.targets import InProcessTarget
from connector_cli.run.types import RunObserver, RunOptions
from connector_cli.testing import make_template, registry_with, run_task, serve_in_background

LINES = 14


@dataclass
class TickMeta(ResourceMeta):
    started_at: float
    paged: bool


class TickConnector(AsyncConnector):
    """A job that writes a line every 0.1 s for 1.4 s; `get_logs` is one page of everything
    so far (`paged` False) or pages of 4 lines resuming from the token."""

    task_type_name = "tick"
    metadata_type = TickMeta

    async def create(self, task_template: Any, output_prefix: str, inputs: Any = None,
                     **kwargs: Any) -> TickMeta:
        return TickMeta(started_at=time.time(), paged=bool((inputs or {}).get("paged")))

    async def get(self, resource_meta: TickMeta, **kwargs: Any) -> Resource:
        done = time.time() - resource_meta.started_at >= LINES / 10
        return Resource(phase=TaskExecution.SUCCEEDED if done else TaskExecution.RUNNING)

    async def delete(self, resource_meta: TickMeta, **kwargs: Any) -> None:
        return None

    async def get_logs(self, resource_meta: TickMeta, token: str = "", **kwargs: Any) -> Any:
        written = min(LINES, int((time.time() - resource_meta.started_at) * 10))
        lines = [f"tick {i}" for i in range(written)]
        if not resource_meta.paged:
            return log_page(lines)
        start = int(token or 0)
        page = lines[start:start + 4]
        return log_page(page, next_token=str(start + len(page)))

    async def get_metrics(self, resource_meta: TickMeta, **kwargs: Any) -> Any:
        start = resource_meta.started_at
        return metrics_response(metric("cpu", [(start, 0.5), (start + 1, 0.25)], {"pod": "p1"}))


class Lines(RunObserver):
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def log_lines(self, lines: list[str]) -> None:
        self.batches.append(lines)


def test_log_page_builds_the_body_then_the_token() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    body, header = log_page(["plain", (when, "stamped"), LogLine(message="ready")], next_token="p2")
    assert [line.message for line in body.body.lines] == ["plain", "stamped", "ready"]
    assert body.body.lines[1].timestamp.ToDatetime(dt.timezone.utc) == when
    assert header.header.token == "p2"
    assert len(log_page(["last"])) == 1
    with pytest.raises(TypeError, match="a log line is a str"):
        log_page([42])


@pytest.mark.parametrize("paged", [False, True])
async def test_follow_prints_every_line_until_the_job_ends(paged: bool) -> None:
    from connector_cli.testing import _run_request

    request = _run_request(make_template("tick", inputs={"paged": bool}), {"paged": paged}, None, None)
    lines = Lines()
    options = RunOptions(poll_interval=0.2, logs="follow", timeout=10)
    result = await Run(InProcessTarget(registry_with(TickConnector())), request, options, lines).execute()
    assert result.status == "succeeded"
    assert result.logs == [f"tick {i}" for i in range(LINES)]
    assert len(lines.batches) > 2  # printed while it ran, not only at the end
    assert sum(lines.batches, []) == result.logs


async def test_metrics_read_back_over_the_wire() -> None:
    template = make_template("tick", inputs={"paged": bool})
    async with serve_in_background(registry_with(TickConnector())) as daemon:
        served = await run_task(daemon, template, {"paged": True}, metrics=True, logs=True)
    assert served.logs == [f"tick {i}" for i in range(LINES)]
    series = served.metrics[0]["data"]["result"][0]
    assert served.metrics[0]["metric"] == "cpu" and series["metric"] == {"__name__": "cpu", "pod": "p1"}
    assert [value for _, value in series["values"]] == ["0.5", "0.25"]
