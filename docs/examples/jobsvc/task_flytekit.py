"""The task Flyte 1 users call: `flyte_connector_jobsvc/task_flytekit.py` after `init`."""

from __future__ import annotations

from typing import Any

from flyte_connector_jobsvc.connector import JobsvcConnector

from connector_cli.adapters.flytekit_tasks import ConnectorTask


class JobsvcTask(ConnectorTask):
    """A word-count job on the job service; `label` names it there."""

    connector = JobsvcConnector

    def __init__(self, name: str, *, label: str = "", endpoint: str,
                 token_secret: str = "jobsvc-token", **kwargs: Any) -> None:
        super().__init__(name, secrets={"api_token": token_secret},
                         configs={"endpoint": endpoint}, **kwargs)
        self.label = label

    def settings(self) -> dict[str, Any]:
        return {"label": self.label}
