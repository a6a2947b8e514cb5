"""connector_cli.run.request: the one request builder of `flyte-connector test` and
`connector_cli.testing.run_task`, and execution metadata shaped like the backend's."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector_cli.errors import LiteralError, UsageError
from connector_cli.run.request import build_request, execution_metadata, output_prefix_for
from connector_cli.run.task_files import load_task, make_inputs
from tests.conftest import JOB_TASK


def test_execution_metadata_looks_like_the_backends() -> None:
    task = load_task(JOB_TASK)
    meta = execution_metadata(task.template)
    execution = meta.task_execution_id.node_execution_id.execution_id
    assert execution.name.startswith("local-") and execution.project == "tests"
    assert meta.task_execution_id.task_id.name == "job-task" and meta.namespace == "local"
    assert execution_metadata(task.template).task_execution_id != meta.task_execution_id


def test_inputs_are_typed_by_the_interface_and_defaults_fill_the_rest(tmp_path: Path) -> None:
    task = load_task(JOB_TASK)
    request = build_request(task.template, {"outcome": "fail"}, defaults=task.defaults,
                            output_prefix=str(tmp_path / "out"))
    assert request.inputs is not None
    assert sorted(n.name for n in request.inputs.literals) == ["outcome", "record", "seconds"]
    assert (tmp_path / "out").is_dir() and request.output_prefix == str(tmp_path / "out")
    assert request.category == ("job", 0)
    with pytest.raises(LiteralError, match="'seconds'"):
        build_request(task.template, {"seconds": "soon"}, defaults=task.defaults)


def test_ready_inputs_pass_through_and_empty_ones_are_none() -> None:
    task = load_task(JOB_TASK)
    ready = make_inputs(task.template, {"outcome": "succeed"}, task.defaults)
    assert build_request(task.template, ready).inputs is ready
    bare = load_task(JOB_TASK).template
    bare.ClearField("interface")
    assert build_request(bare, {}).inputs is None


def test_secrets_become_the_connection_the_template_asks_for() -> None:
    task = load_task(JOB_TASK)
    request = build_request(task.template, {}, defaults=task.defaults, secrets={"x": "y"})
    assert dict(request.connection.secrets) == {"x": "y"}


def test_output_prefix_is_made_when_local_and_kept_when_remote(tmp_path: Path) -> None:
    fresh = Path(output_prefix_for(None))
    assert fresh.is_dir() and fresh.name.startswith("flyte-connector-test-")
    fresh.rmdir()
    assert output_prefix_for("s3://bucket/run") == "s3://bucket/run"
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UsageError, match="cannot create the output prefix"):
        output_prefix_for(str(blocker / "sub"))
