"""GetTask answers too large for the Flyte backend: outputs written to `outputs.pb` instead.

The backend's gRPC client (grpc-go) refuses a response over 4 MiB, and that refusal
counts as a GetTask error. The daemon never sends one: when a SUCCEEDED answer is larger
than `serve --max-response-bytes`, its outputs are written to `<output_prefix>/outputs.pb`
as the `LiteralMap` both backend generations read there when a response carries no
outputs (Flyte 2: `flyteidl2.core.LiteralMap`; Flyte 1: `flyteidl.core.LiteralMap`, the
same wire format), and the answer goes out without them. Local paths and `file://` are
written directly; any other scheme (`s3://`, `gs://`, `abfs://`) through fsspec and its
own extras (`pip install 'flyte-connector[offload]' s3fs`). When that is impossible the
task fails with one message naming the size and the limit.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.core.execution_pb2 import TaskExecution

from connector_cli.config import DEFAULT_MAX_RESPONSE_BYTES

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "fit", "outputs_path", "literal_map", "write_bytes"]

logger = logging.getLogger(__name__)

OUTPUTS_FILE = "outputs.pb"


def outputs_path(output_prefix: str) -> str:
    """Where the backend reads file-based outputs: `<output_prefix>/outputs.pb`."""
    return output_prefix.rstrip("/") + "/" + OUTPUTS_FILE


def literal_map(outputs: Any) -> Any:
    """A `flyteidl2.task.Outputs` as the `LiteralMap` the backend reads from outputs.pb."""
    from flyteidl2.core.literals_pb2 import LiteralMap

    result = LiteralMap()
    for named in outputs.literals:
        result.literals[named.name].CopyFrom(named.value)
    return result


def write_bytes(path: str, data: bytes) -> None:
    """Write `data` at `path`: a local path or file:// directly, other schemes by fsspec."""
    if "://" not in path or path.startswith("file://"):
        local = path[len("file://"):] if path.startswith("file://") else path
        os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
        temporary = f"{local}.tmp-{os.getpid()}"
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, local)  # the backend never reads half a file
        return
    try:
        import fsspec  # type: ignore[import-untyped]
    except ImportError:
        raise OSError(f"writing to {path.split('://')[0]}:// needs fsspec "
                      "(pip install 'flyte-connector[offload]' and the scheme's package, "
                      "e.g. s3fs)") from None
    with fsspec.open(path, "wb") as handle:
        handle.write(data)


async def fit(data: bytes, limit: int, output_prefix: str, where: str) -> bytes:
    """`data`, a serialized GetTaskResponse, made to fit `limit` bytes: outputs moved to
    outputs.pb, else a FAILED answer naming the size and the limit."""
    response = pb.GetTaskResponse.FromString(data)
    resource = response.resource
    reason = "it carries no outputs to move to a file"
    if resource.HasField("outputs") and resource.phase == TaskExecution.SUCCEEDED:
        if not output_prefix:
            reason = "the request has no output_prefix to write outputs.pb under"
        else:
            path = outputs_path(output_prefix)
            try:
                payload = literal_map(resource.outputs).SerializeToString()
                await asyncio.get_running_loop().run_in_executor(None, write_bytes, path,
                                                                 payload)
            except Exception as exc:  # noqa: BLE001 - any storage failure fails the task
                reason = f"writing {path} failed ({type(exc).__name__}: {exc})"
            else:
                resource.ClearField("outputs")
                smaller = response.SerializeToString()
                if len(smaller) <= limit:
                    logger.info("%s: %d bytes of outputs written to %s (the answer would be "
                                "%d bytes, over the limit of %d)", where, len(payload), path,
                                len(data), limit)
                    return smaller  # type: ignore[no-any-return]
                reason = "it is still too large without its outputs"
    logger.error("%s: the answer of %d bytes is over the limit of %d: %s", where, len(data),
                 limit, reason)
    failed = pb.GetTaskResponse()
    failed.resource.phase = TaskExecution.FAILED
    failed.resource.message = (
        f"the connector's answer is {len(data)} bytes, over the {limit}-byte limit of the "
        f"Flyte backend (--max-response-bytes), and {reason}"
    )[:2000]
    return failed.SerializeToString()  # type: ignore[no-any-return]
