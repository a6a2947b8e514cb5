"""Helpers that build what `get_logs` and `get_metrics` return, from plain Python values.

`log_page(lines, next_token)` is one page of log lines in the shape log clients read
(`body.lines`, then a `header` with the next page's token when there is one);
`metrics_response` and `metric` build a `GetTaskMetricsResponse` whose series are in the
Prometheus result shape `flyte-connector test --metrics` prints.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Mapping, Optional, Union

from flyteidl2.connector.connector_pb2 import (
    GetTaskLogsResponse,
    GetTaskLogsResponseBody,
    GetTaskLogsResponseHeader,
    GetTaskMetricsResponse,
)
from flyteidl2.core.metrics_pb2 import ExecutionMetricResult
from flyteidl2.logs.dataplane.payload_pb2 import LogLine
from google.protobuf.struct_pb2 import Struct

__all__ = ["log_page", "metric", "metrics_response"]

LineLike = Union[str, tuple[Union[dt.datetime, float], str], Any]
Sample = tuple[Union[dt.datetime, float], float]


def log_page(lines: Iterable[LineLike],
             next_token: Optional[str] = "") -> list[GetTaskLogsResponse]:
    """One page of logs for `get_logs` to return: the lines, then the token of the next page.

    A line is a string, a `(when, text)` pair (`when` a datetime or epoch seconds), or a
    ready `LogLine`. Give `next_token` while more lines may follow (the caller passes it
    back as `token` for the next page) and leave it empty on the last page: `flyte-connector
    test --follow` keeps asking from the last token until the job ends, so a job still
    writing should return the token to resume from even when the page is short.
    """
    body = GetTaskLogsResponseBody(lines=[_log_line(line) for line in lines])
    page = [GetTaskLogsResponse(body=body)]
    if next_token:
        page.append(GetTaskLogsResponse(header=GetTaskLogsResponseHeader(token=next_token)))
    return page


def _log_line(line: LineLike) -> Any:
    if isinstance(line, LogLine):
        return line
    if isinstance(line, str):
        return LogLine(message=line)
    if isinstance(line, tuple) and len(line) == 2:
        when, text = line
        made = LogLine(message=str(text))
        made.timestamp.FromDatetime(_utc(when))
        return made
    raise TypeError(f"a log line is a str, a (when, text) pair or a LogLine, not "
                    f"{type(line).__name__}")


def metric(name: str, samples: Iterable[Sample],
           labels: Optional[Mapping[str, str]] = None) -> ExecutionMetricResult:
    """One metric series: `(when, value)` samples (datetime or epoch seconds)."""
    values = [[_utc(when).timestamp(), str(value)] for when, value in samples]
    data = Struct()
    data.update({"resultType": "matrix",
                 "result": [{"metric": {"__name__": name, **dict(labels or {})},
                             "values": values}]})
    return ExecutionMetricResult(metric=name, data=data)


def metrics_response(*metrics: ExecutionMetricResult) -> GetTaskMetricsResponse:
    """What `get_metrics` returns: the series built with `metric`."""
    return GetTaskMetricsResponse(results=list(metrics))


def _utc(when: Union[dt.datetime, float]) -> dt.datetime:
    if isinstance(when, dt.datetime):
        return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)
    return dt.datetime.fromtimestamp(float(when), tz=dt.timezone.utc)
