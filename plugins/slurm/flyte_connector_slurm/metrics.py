"""Job metrics from what Slurm knows: `sstat` while the batch step runs, `scontrol` after.

Results are Prometheus range-query results (a matrix with one sample), as the connector
contract's GetTaskMetrics expects.
"""

from __future__ import annotations

import re
import time
from typing import Any, Optional

from connector_cli.errors import UsageError
from flyte_connector_slurm.states import from_scontrol
from flyte_connector_slurm.transport import Transport

METRICS = ("cpu_seconds", "max_rss_bytes", "elapsed_seconds")
_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
_DURATION = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)$")


def check(wanted: list[str]) -> None:
    """Refuse a metric this connector does not know, naming the known ones."""
    unknown = [name for name in wanted if name not in METRICS]
    if unknown:
        raise UsageError(f"slurm task: unknown metric {unknown[0]!r}; known: {', '.join(METRICS)}")


def seconds(text: str) -> Optional[float]:
    """Slurm durations ('1-02:03:04', '02:03', '00:00.123') in seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        return None
    days, hours, minutes, secs = match.groups()
    return (int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes) * 60
            + float(secs))


def size_bytes(text: str) -> Optional[float]:
    """Slurm sizes ('63920K', '1.5G') in bytes."""
    match = re.match(r"^(\d+(?:\.\d+)?)([KMGT]?)$", text.strip())
    return float(match.group(1)) * _UNITS[match.group(2)] if match else None


def _tres(text: str) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in text.split(",") if "=" in item)


async def collect(transport: Transport, job_id: int) -> dict[str, float]:
    """What Slurm reports now; a metric it does not know is simply absent."""
    values: dict[str, float] = {}
    shown = await transport.run(["scontrol", "show", "job", "-o", str(job_id)])
    if shown.returncode == 0 and shown.stdout.strip():
        elapsed = seconds(from_scontrol(shown.stdout).elapsed)
        if elapsed is not None:
            values["elapsed_seconds"] = elapsed
    stat = await transport.run(["sstat", "-n", "-P", "-a", "-j", str(job_id),
                                "-o", "JobID,TRESUsageInTot,TRESUsageInMax"])
    for line in stat.stdout.splitlines() if stat.returncode == 0 else []:
        parts = line.split("|")
        if len(parts) == 3 and parts[0] == f"{job_id}.batch":
            cpu = seconds(_tres(parts[1]).get("cpu", ""))
            rss = size_bytes(_tres(parts[2]).get("mem", ""))
            if cpu is not None:
                values["cpu_seconds"] = cpu
            if rss is not None:
                values["max_rss_bytes"] = rss
    return values


def response(wanted: list[str], values: dict[str, float], job_id: int) -> Any:
    """A GetTaskMetricsResponse with one result per wanted metric."""
    from flyteidl2.connector.connector_pb2 import GetTaskMetricsResponse
    from flyteidl2.core.metrics_pb2 import ExecutionMetricResult
    from google.protobuf.struct_pb2 import Struct

    now = time.time()
    results = []
    for name in wanted:
        value = values.get(name)
        series = [] if value is None else [{
            "metric": {"__name__": name, "job_id": str(job_id)},
            "values": [[now, str(int(value)) if float(value).is_integer() else repr(value)]],
        }]
        data = Struct()
        data.update({"resultType": "matrix", "result": series})
        results.append(ExecutionMetricResult(metric=name, data=data))
    return GetTaskMetricsResponse(results=results)
