"""The request a run sends to its connector, built one way for `flyte-connector test` and
for `connector_cli.testing.run_task`, so an author's test cannot drift from the CLI.

A `RunRequest` carries what a CreateTaskRequest carries: the template, typed inputs, an
output prefix, execution metadata shaped like the backend's, and the connection whose
secrets resolve the template's `custom.secrets` (see `connector_cli.run.secret_sources`).
"""

from __future__ import annotations

import secrets as stdlib_secrets
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

from flyteidl2.connector.connector_pb2 import TaskExecutionMetadata
from flyteidl2.core import identifier_pb2 as ids
from flyteidl2.task.common_pb2 import Inputs

from connector_cli.errors import UsageError
from connector_cli.literals import json_to_inputs
from connector_cli.run.secret_sources import connection_for
from connector_cli.run.types import RunRequest

if TYPE_CHECKING:
    from flyteidl2.core.literals_pb2 import Literal
    from flyteidl2.core.tasks_pb2 import TaskTemplate


def build_request(
    template: TaskTemplate,
    inputs: Inputs | Mapping[str, Any] | None,
    *,
    defaults: Optional[Mapping[str, Literal]] = None,
    secrets: Optional[Mapping[str, str]] = None,
    output_prefix: Optional[str] = None,
) -> RunRequest:
    """A `RunRequest` for `template`: Python or JSON `inputs` are typed by its interface
    (`defaults` fill the missing ones), `secrets` become the call's connection, and the
    output prefix is `output_prefix` (a local one is created) or a fresh temporary one."""
    typed: Inputs
    if isinstance(inputs, Inputs):
        typed = inputs
    else:
        interface = template.interface if template.HasField("interface") else None
        typed = json_to_inputs(inputs or {}, interface, defaults)
    connection = connection_for(template, secrets or {})
    return RunRequest(
        template=template,
        inputs=typed if len(typed.literals) else None,
        task_execution_metadata=execution_metadata(template),
        connection=connection,
        output_prefix=output_prefix_for(output_prefix),  # last: nothing fails after it
    )


def output_prefix_for(given: Optional[str]) -> str:
    """The given prefix (a local one is created), or a fresh temporary directory."""
    if not given:
        return tempfile.mkdtemp(prefix="flyte-connector-test-")
    if "://" not in given:
        try:
            Path(given).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"cannot create the output prefix {given!r}: {exc.strerror}"
            ) from None
    return given


def execution_metadata(template: TaskTemplate, name: str | None = None) -> Any:
    """`TaskExecutionMetadata` for a local run, shaped like what the backend sends.

    The execution gets a generated name (`local-<hex>`), project/domain from the
    template id (else "local"/"development"), namespace "local" and the "default"
    service account; `max_attempts` and `interruptible` stay unset, as in production.
    """
    name = name or f"local-{stdlib_secrets.token_hex(4)}"
    project = template.id.project or "local"
    domain = template.id.domain or "development"
    task_id = ids.Identifier(
        resource_type=ids.TASK, project=project, domain=domain, org=template.id.org,
        name=template.id.name or template.type, version=template.id.version or "local",
    )
    execution = ids.WorkflowExecutionIdentifier(project=project, domain=domain, name=name,
                                                org=template.id.org)
    return TaskExecutionMetadata(
        task_execution_id=ids.TaskExecutionIdentifier(
            task_id=task_id,
            node_execution_id=ids.NodeExecutionIdentifier(node_id="n0", execution_id=execution),
            retry_attempt=0,
        ),
        namespace="local",
        labels={"execution-id": name, "project": project, "domain": domain},
        k8s_service_account="default",
    )
