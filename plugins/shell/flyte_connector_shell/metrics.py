"""The shell job's metrics: CPU time and memory of its process tree, as Prometheus
range-query results (what GetTaskMetrics answers)."""

from __future__ import annotations

from typing import Any, Optional

from flyte_connector_shell import procfs

METRICS = ("cpu_seconds", "memory_rss_bytes", "memory_peak_rss_bytes", "processes")


def metric_values(meta: Any) -> dict[str, float]:
    """The values of every metric: from the exit record once ended, else from /proc."""
    record = meta.exit_record()
    if record is not None:
        return {"cpu_seconds": record["cpu_seconds"],
                "memory_peak_rss_bytes": record["max_rss_bytes"], "processes": 0}
    members = procfs.job_processes(meta.pid, meta.start_ticks, meta.boot_id, nonce=meta.nonce)
    used = procfs.usage([p for p in members if p.pid != meta.pid])
    return {"cpu_seconds": used.cpu_seconds, "memory_rss_bytes": used.rss_bytes,
            "processes": used.processes}


def metric(name: str, meta: Any, value: Optional[float], now: float) -> Any:
    """One metric as a Prometheus range-query result (matrix) with one sample, or none."""
    from flyteidl2.core.metrics_pb2 import ExecutionMetricResult
    from google.protobuf.struct_pb2 import Struct

    series = [] if value is None else [
        {"metric": {"__name__": name, "pid": str(meta.pid)}, "values": [[now, number(value)]]}
    ]
    data = Struct()
    data.update({"resultType": "matrix", "result": series})
    return ExecutionMetricResult(metric=name, data=data)


def number(value: float) -> str:
    """Prometheus sample values are strings: integers without a fraction."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
