"""What a connector returns, as response messages, checked against the SDK contract.

`fill_resource` writes a `Resource` (or a ready `flyteidl2.connector.Resource`) into a
GetTask answer, converting outputs by inference (GetTask carries no interface) and
failing the task, not the call, when they cannot be converted; `log_message` makes one
response of a log page. A connector that breaks the contract raises `ContractError`
(INTERNAL, naming the connector and what to return instead).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.core.execution_pb2 import TaskExecution

from connector_cli.errors import LiteralError
from connector_cli.sdk.connector import Resource

logger = logging.getLogger(__name__)


class ContractError(Exception):
    """A connector broke the SDK contract (e.g. `create` returned no ResourceMeta): INTERNAL."""


def fill_resource(out: pb.Resource, resource: Any, where: str) -> None:
    """Write a connector's `Resource` into the wire message `out` (no copies); outputs
    are converted by inference, as GetTask carries no interface."""
    if isinstance(resource, pb.Resource):
        if resource.phase == 0:
            raise ContractError(f"{where} returned phase UNDEFINED; return a real phase")
        out.CopyFrom(resource)
        return
    if not isinstance(resource, Resource):
        raise ContractError(f"{where} returned {type(resource).__name__}; return a Resource")
    phase = resource.phase
    if not isinstance(phase, int) or phase == 0:
        phase = Resource(phase).phase  # a phase set after construction: validate it now
    if resource.outputs is not None and not _set_outputs(out, resource.outputs, where):
        return
    out.phase = phase
    if resource.message:
        out.message = resource.message
    if resource.log_links:
        out.log_links.extend(resource.log_links)
    if resource.custom_info:
        try:
            out.custom_info.update(resource.custom_info)
        except (TypeError, ValueError) as exc:
            raise ContractError(
                f"{where} returned custom_info that is not JSON data: {exc}"
            ) from None


def _set_outputs(out: pb.Resource, outputs: Any, where: str) -> bool:
    """Convert outputs into `out`; on failure make `out` a FAILED resource and say False
    (retrying GetTask cannot fix a connector's outputs, so fail the task, not the RPC).

    A dict of values is written straight into `out.outputs` (no intermediate message)."""
    from connector_cli.literals import outputs_to_proto, write_outputs

    try:
        if type(outputs) is dict or isinstance(outputs, Mapping):
            out.outputs.SetInParent()  # set even when empty, as a converted message would be
            write_outputs(outputs, None, out.outputs)
        else:
            out.outputs.CopyFrom(outputs_to_proto(outputs, None))
    except LiteralError as exc:
        logger.error("%s returned outputs that cannot be converted: %s", where, exc)
        out.ClearField("outputs")
        out.phase = TaskExecution.FAILED
        out.message = f"the connector's outputs cannot be converted to Flyte literals: {exc}"
        return False
    return True


def log_message(page: Any, where: str) -> pb.GetTaskLogsResponse:
    """A page a connector's `get_logs` produced, as the one response message."""
    if isinstance(page, pb.GetTaskLogsResponse):
        return page
    if isinstance(page, pb.GetTaskLogsResponseBody):
        return pb.GetTaskLogsResponse(body=page)
    if isinstance(page, pb.GetTaskLogsResponseHeader):
        return pb.GetTaskLogsResponse(header=page)
    raise ContractError(
        f"{where} produced {type(page).__name__}; return or yield GetTaskLogsResponse messages"
    )
