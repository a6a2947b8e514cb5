"""A connector for a REST job service: `flyte_connector_jobsvc/connector.py` after `init`.

A job counts the words of its `text` input. Everything `get`, `delete` and `get_logs` need
travels in `JobsvcMeta`. The service's address is a config (`endpoint`) and its API token
a secret (`api_token`): both come from the task's `custom` as keyword arguments. The
methods are plain `def` because `urllib` blocks: the daemon runs them on worker threads.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Optional

from flyteidl2.core.execution_pb2 import TaskExecution, TaskLog

from connector_cli import (
    AsyncConnector,
    Resource,
    ResourceMeta,
    TransientError,
    UsageError,
    log_page,
    metric,
    metrics_response,
    template_custom,
)


@dataclass
class JobsvcMeta(ResourceMeta):
    job_id: str
    endpoint: str


class JobsvcConnector(AsyncConnector):
    name = "Jobsvc"
    task_type_name = "jobsvc"
    metadata_type = JobsvcMeta

    def create(self, task_template: Any, output_prefix: str,
               inputs: Optional[dict[str, Any]] = None, *, endpoint: str = "",
               api_token: str = "", **kwargs: Any) -> JobsvcMeta:
        inputs = inputs or {}
        if not endpoint:
            raise UsageError("the task has no 'endpoint' config; add configs={'endpoint': URL}")
        custom = template_custom(task_template)
        body = {"text": inputs["text"], "seconds": inputs.get("seconds", 0.0),
                "label": custom.get("label", "")}
        job = _call("POST", f"{endpoint}/jobs", api_token, body)
        return JobsvcMeta(job_id=job["id"], endpoint=endpoint)

    def get(self, resource_meta: JobsvcMeta, *, api_token: str = "", **kwargs: Any) -> Resource:
        job = _call("GET", f"{resource_meta.endpoint}/jobs/{resource_meta.job_id}", api_token)
        link = TaskLog(name="Job", uri=f"{resource_meta.endpoint}/jobs/{resource_meta.job_id}")
        phase = {"running": TaskExecution.RUNNING, "succeeded": TaskExecution.SUCCEEDED,
                 "cancelled": TaskExecution.ABORTED}.get(job["state"], TaskExecution.FAILED)
        if phase != TaskExecution.SUCCEEDED:
            return Resource(phase=phase, message=f"job is {job['state']}", log_links=[link])
        # Outputs go out by their Python type: give each the type the task declares.
        return Resource(phase=phase, message="counted", log_links=[link],
                        outputs={"words": int(job["words"]), "score": float(job["score"])})

    def delete(self, resource_meta: JobsvcMeta, *, api_token: str = "", **kwargs: Any) -> None:
        _call("DELETE", f"{resource_meta.endpoint}/jobs/{resource_meta.job_id}", api_token)

    def get_logs(self, resource_meta: JobsvcMeta, token: str = "", **kwargs: Any) -> Any:
        # `token` is the page token. GetTaskLogs carries no connection: served, `api_token`
        # comes from the daemon's connections file (serve --connections); in-process
        # (flyte-connector test), from the environment.
        api_token = kwargs.get("api_token") or os.environ.get("JOBSVC_TOKEN", "")
        url = f"{resource_meta.endpoint}/jobs/{resource_meta.job_id}/logs?after={token or 0}"
        page = _call("GET", url, api_token)
        more = page["next"]
        return log_page(page["lines"], next_token="" if more is None else str(more))

    def get_metrics(self, resource_meta: JobsvcMeta, **kwargs: Any) -> Any:
        # No connection here either: the daemon's credential, as for the logs.
        api_token = kwargs.get("api_token") or os.environ.get("JOBSVC_TOKEN", "")
        job = _call("GET", f"{resource_meta.endpoint}/jobs/{resource_meta.job_id}", api_token)
        return metrics_response(
            metric("words_counted", [(time.time(), job["words"])], {"job": resource_meta.job_id}))


def _call(method: str, url: str, api_token: str, body: Optional[dict[str, Any]] = None) -> Any:
    """One request; 5xx and network trouble are transient, other refusals permanent."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {api_token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise TransientError(f"{method} {url}: HTTP {exc.code}") from None
        if method == "DELETE" and exc.code == 404:
            return None  # already gone: delete is idempotent
        raise RuntimeError(f"{method} {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError) as exc:
        raise TransientError(f"{method} {url}: {exc}") from None
    return json.loads(text) if text else None
