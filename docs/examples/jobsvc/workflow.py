"""Workflow code calling the jobsvc task, as a Flyte 2 user writes it.

Run it on this machine (the Flyte SDK's local execution calls the connector in-process;
the secret comes from the variable named like it):

    env 'jobsvc-token=...' JOBSVC_URL=http://127.0.0.1:8080 python workflow.py
"""

from __future__ import annotations

import os

import flyte
from flyte_connector_jobsvc.task import JobsvcTask

count = JobsvcTask(
    "count_words", label="nightly",
    endpoint=os.environ.get("JOBSVC_URL", "https://jobs.example.com"),
    inputs={"text": str, "seconds": float}, outputs={"words": int, "score": float},
)
tasks = flyte.TaskEnvironment.from_task("jobsvc_tasks", count)
workflow = flyte.TaskEnvironment(name="jobsvc_workflow", depends_on=[tasks])


@workflow.task
async def report(text: str) -> str:
    words, score = await count(text=text, seconds=0.2)
    return f"{words} words, score {score}"


if __name__ == "__main__":
    flyte.init()
    print(flyte.run(report, text="one two three four").outputs()[0])
