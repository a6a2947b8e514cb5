"""A connector written for the Flyte SDK: `flyte-connector serve` runs it unchanged."""

from dataclasses import dataclass
from typing import Any, Optional

from flyte.connectors import AsyncConnector, ConnectorRegistry, Resource, ResourceMeta
from flyte.connectors.utils import convert_to_flyte_phase
from flyteidl2.core.execution_pb2 import TaskLog

JOBS: dict[str, str] = {}


@dataclass
class ReportMeta(ResourceMeta):
    job_id: str


class ReportConnector(AsyncConnector[ReportMeta]):
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
