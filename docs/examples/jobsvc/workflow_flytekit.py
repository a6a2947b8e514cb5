"""Workflow code calling the jobsvc task, as a Flyte 1 (flytekit) user writes it.

Run it on this machine (flytekit's local execution calls the connector in-process; the
secret comes from the variable named like it, in capitals):

    env 'JOBSVC-TOKEN=...' JOBSVC_URL=http://127.0.0.1:8080 \
        pyflyte run workflow_flytekit.py report --text "one two"
"""

from __future__ import annotations

import os

from flyte_connector_jobsvc.task_flytekit import JobsvcTask
from flytekit import workflow

count = JobsvcTask(
    "count_words", label="nightly",
    endpoint=os.environ.get("JOBSVC_URL", "https://jobs.example.com"),
    inputs={"text": str, "seconds": float}, outputs={"words": int, "score": float},
)


@workflow
def report(text: str) -> tuple[int, float]:
    words, score = count(text=text, seconds=0.2)
    return words, score


if __name__ == "__main__":
    print(report(text="one two three four"))
