"""The reference kit's `bench` connector written for flytekit (Flyte 1's connector API).

Does what the kit's `flyte_bench_connector.py` does, the flytekit way, so that
`bench_flytekit.py` can serve one module on both `pyflyte serve connector` and our daemon:
`create` returns a dataclass ResourceMeta `{job_id, region}`; `get` returns SUCCEEDED,
message `ok` and the outputs `o0 = 42` and `o1 = "done"` as Python values, which the
server turns into a LiteralMap with flytekit's type engine (`Resource.to_flyte_idl`, as
flytekit documents for connectors), so that conversion is part of what is measured on
both; `delete` does nothing. Importing the module registers it in flytekit's registry.

Env knobs (read at import time), as the kit's connector:
  BENCH_TASK_TYPE   task type name to register (default "bench")
  BENCH_GET_MODE    none | async | blocking (default none): `get` returns at once, awaits
                    `asyncio.sleep(BENCH_GET_SLEEP)`, or blocks its loop in `time.sleep`
  BENCH_GET_SLEEP   seconds, default 0.1
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from dataclasses import dataclass
from typing import Any, Optional

from flyteidl.core.execution_pb2 import TaskExecution
from flytekit.extend.backend.base_connector import (
    AsyncConnectorBase,
    ConnectorRegistry,
    Resource,
    ResourceMeta,
)
from flytekit.models.literals import LiteralMap
from flytekit.models.task import TaskTemplate

TASK_TYPE = os.environ.get("BENCH_TASK_TYPE", "bench")
GET_MODE = os.environ.get("BENCH_GET_MODE", "none")
GET_SLEEP = float(os.environ.get("BENCH_GET_SLEEP", "0.1"))

_ids = itertools.count()


@dataclass
class BenchMeta(ResourceMeta):
    job_id: str
    region: str = "local"


class BenchConnector(AsyncConnectorBase):
    """Answers like the kit's floor; `get` can wait or block (BENCH_GET_MODE)."""

    name = "Bench Connector"

    def __init__(self) -> None:
        super().__init__(task_type_name=TASK_TYPE, metadata_type=BenchMeta)

    async def create(self, task_template: TaskTemplate, output_prefix: str,
                     inputs: Optional[LiteralMap] = None, **kwargs: Any) -> BenchMeta:
        return BenchMeta(job_id=f"job-{next(_ids)}")

    async def get(self, resource_meta: BenchMeta, **kwargs: Any) -> Resource:
        if GET_MODE == "async":
            await asyncio.sleep(GET_SLEEP)
        elif GET_MODE == "blocking":
            time.sleep(GET_SLEEP)  # deliberately blocks the event loop
        return Resource(phase=TaskExecution.SUCCEEDED, message="ok",
                        outputs={"o0": 42, "o1": "done"})

    async def delete(self, resource_meta: BenchMeta, **kwargs: Any) -> None:
        return None


ConnectorRegistry.register(BenchConnector(), override=True)
