"""The same connector ported to flyte-connector's SDK: no Flyte SDK dependency."""

from dataclasses import dataclass
from typing import Any, Optional

from flyteidl2.core.execution_pb2 import TaskLog

from connector_cli import (
    AsyncConnector,
    ConnectorRegistry,
    Resource,
    ResourceMeta,
    convert_to_flyte_phase,
)

JOBS: dict[str, str] = {}


@dataclass
class ReportMeta(ResourceMeta):
    job_id: str


class ReportConnector(AsyncConnector):
    name = "Report Connector"
    task_type_name = "report"
    metadata_type = ReportMeta

    async def create(self, task_template: Any, output_prefix: str,
                     inputs: Optional[dict[str, Any]] = None, **kwargs: Any) -> ReportMeta:
        job_id = f"report-{(inputs or {}).get('day', 'today')}"
        JOBS[job_id] = "running"
        return ReportMeta(job_id=job_id)

    async def get(self, resource_meta: ReportMeta, **kwargs: Any) -> Resource:
        state = JOBS.get(resource_meta.job_id, "done")
        JOBS[resource_meta.job_id] = "done"
        link = TaskLog(uri=f"https://reports.example/{resource_meta.job_id}", name="Report")
        outputs = {"rows": 42} if state == "done" else None
        return Resource(phase=convert_to_flyte_phase(state), log_links=[link], outputs=outputs)

    async def delete(self, resource_meta: ReportMeta, **kwargs: Any) -> None:
        JOBS.pop(resource_meta.job_id, None)


ConnectorRegistry.register(ReportConnector())
