"""connector_cli.testing and its pytest plugin: what connector authors test with."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Optional

import pytest
from flyteidl2.core.types_pb2 import LiteralType, SimpleType

from connector_cli.errors import ConnectorNotFound, LiteralError, UsageError
from connector_cli.literals import FlyteFile, inputs_to_python
from connector_cli.literals._types import type_name
from connector_cli.sdk.registry import ConnectorRegistry
from connector_cli.testing import make_inputs, make_template, registry_with, run_task
from tests.conftest import REPO, cli_env

FIXTURES = REPO / "tests" / "fixtures" / "connectors"
JOB_OUTPUTS = {"answer": int, "job_id": str}


class Color(Enum):
    RED = "red"
    BLUE = "blue"


@pytest.fixture
def jobs_registry(monkeypatch: pytest.MonkeyPatch) -> ConnectorRegistry:
    monkeypatch.syspath_prepend(str(FIXTURES))
    return registry_with(modules=["run_jobs"])


def job(**custom: object) -> object:
    return make_template("job", inputs={"outcome": str, "seconds": float, "record": str},
                         outputs=JOB_OUTPUTS, custom=custom or None)


def test_make_template_maps_python_types_and_example_values() -> None:
    template = make_template(
        "weather", version=2, name="forecast", custom={"region": "eu", "retries": 3},
        inputs={"n": int, "ratio": float, "names": list[str], "scores": dict[str, float],
                "when": datetime, "wait": timedelta, "f": FlyteFile, "maybe": Optional[int],
                "either": int | str, "color": Color, "config": dict, "example": [1.5, 2.0],
                "ready": LiteralType(simple=SimpleType.BOOLEAN)},
        outputs={"ok": True})
    assert (template.type, template.task_type_version, template.id.name) == ("weather", 2, "forecast")
    types = {v.key: type_name(v.value.type) for v in template.interface.inputs.variables}
    assert types == {
        "n": "integer", "ratio": "float", "names": "list[string]", "scores": "map[str, float]",
        "when": "datetime", "wait": "duration", "f": "file", "maybe": "integer | none",
        "either": "integer | string", "color": "enum(red, blue)", "config": "struct",
        "example": "list[float]", "ready": "boolean",
    }
    variants = template.interface.inputs.variables[7].value.type.union_type.variants
    assert [v.structure.tag for v in variants] == ["int", "none"]
    assert type_name(template.interface.outputs.variables[0].value.type) == "boolean"
    assert dict(template.custom) == {"region": "eu", "retries": 3.0}


def test_make_template_names_what_it_cannot_use() -> None:
    with pytest.raises(LiteralError, match=r"^input 'tags': cannot map the type set\[str\]"):
        make_template("t", inputs={"tags": set[str]})
    with pytest.raises(LiteralError, match=r"^output 'mixed': list elements have different types"):
        make_template("t", outputs={"mixed": [1, "a"]})
    with pytest.raises(UsageError, match="custom must be a mapping"):
        make_template("t", custom=["not", "a", "mapping"])  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="needs a task type"):
        make_template("")


def test_make_inputs_types_values_by_the_interface() -> None:
    template = make_template("t", inputs={"n": int, "when": datetime, "f": FlyteFile, "tags": list[str]})
    inputs = make_inputs(template, {"n": 3, "when": "2024-05-01T12:00:00Z", "f": "s3://b/k.csv", "tags": []})
    values = inputs_to_python(inputs, template.interface)
    assert values["n"] == 3 and values["tags"] == []
    assert values["when"].isoformat() == "2024-05-01T12:00:00+00:00"
    assert values["f"] == FlyteFile("s3://b/k.csv")
    with pytest.raises(LiteralError, match="input 'n': expected an integer"):
        make_inputs(template, {"n": "three", "when": "2024-05-01T12:00:00Z", "f": "x", "tags": []})
    with pytest.raises(LiteralError, match="unknown input 'typo'"):
        make_inputs(template, {"typo": 1})


async def test_a_run_reports_phases_python_outputs_and_links(run_connector, jobs_registry, tmp_path) -> None:
    record = tmp_path / "record.txt"
    result = await run_connector(job(), {"outcome": "succeed", "seconds": 0.2, "record": str(record)},
                                 connector=jobs_registry)
    assert result.status == "succeeded", result.error
    assert result.phases[0] == "RUNNING" and result.phases[-1] == "SUCCEEDED"
    assert result.polls == len(result.phases) >= 2
    assert result.output_values == {"answer": 42, "job_id": result.output_values["job_id"]}
    assert [link.name for link in result.log_links] == ["Job console"]
    assert result.custom_info == {"job_id": result.output_values["job_id"], "cluster": "c1"}
    assert not result.deleted
    lines = record.read_text().splitlines()
    assert lines[0].endswith(f"prefix={tmp_path / 'run-1'}")
    assert lines[-1].startswith("get ") and not any(line.startswith("delete") for line in lines)


async def test_failures_are_results_and_timeouts_delete_the_job(run_connector, jobs_registry, tmp_path) -> None:
    failed = await run_connector(job(), {"outcome": "fail", "seconds": 0, "record": ""}, connector=jobs_registry)
    assert (failed.status, failed.phase, failed.message) == ("failed", "FAILED", "the job ran out of memory")
    record = tmp_path / "hang.txt"
    hung = await run_connector(job(), {"outcome": "hang", "seconds": 0, "record": str(record)},
                               connector=jobs_registry, timeout=0.3)
    assert (hung.status, hung.deleted) == ("timed_out", True)
    assert record.read_text().splitlines()[-1].startswith("delete job-")


async def test_connector_exceptions_are_raised_after_cleanup_unless_asked_not_to(jobs_registry, tmp_path) -> None:
    inputs = {"outcome": "raise-get", "seconds": 0, "record": str(tmp_path / "r.txt")}
    with pytest.raises(ValueError, match="lost track of job-"):
        await run_task(jobs_registry, job(), inputs, output_prefix=tmp_path)
    assert (tmp_path / "r.txt").read_text().splitlines()[-1].startswith("delete job-")
    result = await run_task(jobs_registry, job(), {**inputs, "outcome": "raise-create"},
                            raise_errors=False)
    assert result.status == "error"
    assert result.error == "JobConnector.create failed: RuntimeError: the job service refused the job"


async def test_secrets_resolve_through_custom_secrets_like_the_backend(jobs_registry) -> None:
    template = job(secrets={"api_key": "job-service-key"})
    inputs = {"outcome": "succeed", "seconds": 0, "record": ""}
    result = await run_task(jobs_registry, template, inputs, secrets={"job-service-key": "s3cr3t"})
    meta = json.loads(result.resource_meta)
    assert meta["api_key_seen"] is True and "s3cr3t" not in result.resource_meta.decode()
    with pytest.raises(UsageError, match="needs secret 'job-service-key'"):
        await run_task(jobs_registry, template, inputs)
    result = await run_task(jobs_registry, template, inputs, raise_errors=False)
    assert (result.status, result.exit_code) == ("invalid_input", 2)
    assert "needs secret 'job-service-key'" in result.error and result.resource_meta is None


async def test_a_temporary_output_prefix_is_removed_and_a_given_one_kept(
        jobs_registry, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    tempfile.tempdir = None  # read TMPDIR again
    try:
        result = await run_task(jobs_registry, FIXTURES / "run_job_task.yaml", {"seconds": 0})
    finally:
        tempfile.tempdir = None
    assert result.status == "succeeded" and list((tmp_path / "tmp").iterdir()) == []
    kept = tmp_path / "out"
    await run_task(jobs_registry, FIXTURES / "run_job_task.yaml", {"seconds": 0},
                   output_prefix=kept)
    assert kept.is_dir()


async def test_templates_and_inputs_can_be_files(jobs_registry, tmp_path) -> None:
    values = tmp_path / "inputs.json"
    values.write_text(json.dumps({"seconds": 0.05}))
    result = await run_task(jobs_registry, FIXTURES / "run_job_task.yaml", values)
    assert result.status == "succeeded" and result.output_values["answer"] == 42


async def test_a_single_connector_is_a_target_and_a_wrong_type_is_not_found(jobs_registry) -> None:
    connector = jobs_registry.get_connector("sync-job")
    result = await run_task(connector, make_template("sync-job"))
    assert (result.status, result.message) == ("succeeded", "done synchronously")
    with pytest.raises(ConnectorNotFound, match="no connector for task type 'job' v0.*sync-job v0"):
        await run_task(connector, job(), {"outcome": "succeed", "seconds": 0, "record": ""})
    with pytest.raises(TypeError, match="not str"):
        await run_task("job", job())  # type: ignore[arg-type]


async def test_a_daemon_gives_the_same_result_as_in_process(connector_daemon, jobs_registry) -> None:
    daemon = await connector_daemon(jobs_registry)
    assert sorted(c.name for c in await daemon.client.list_connectors()) == ["Job", "SyncJob"]
    inputs = {"outcome": "succeed", "seconds": 0.1, "record": ""}
    served = await run_task(daemon, job(), inputs, logs=True)
    local = await run_task(jobs_registry, job(), inputs, logs=True)
    for result in (served, local):
        assert result.status == "succeeded" and result.output_values["answer"] == 42
        assert result.phases[-1] == "SUCCEEDED" and result.logs[:2] == ["line 0", "line 1"]
    with pytest.raises(UsageError, match="input 'seconds': expected a float"):
        await run_task(daemon, job(), {**inputs, "seconds": "soon"})
    bad = await run_task(daemon, job(), {**inputs, "seconds": "soon"}, raise_errors=False)
    assert bad.status == "invalid_input" and "input 'seconds': expected a float" in bad.error
    second = await connector_daemon(jobs_registry.get_connector("sync-job"))
    assert second.port != daemon.port
    assert [c.name for c in await second.client.list_connectors()] == ["SyncJob"]


PLUGIN_SUITE = '''
import pytest
from connector_cli.testing import make_template
from run_jobs import JobConnector

@pytest.mark.asyncio
async def test_fixtures(connector_daemon, run_connector, connector_registry, tmp_path):
    daemon = await connector_daemon(JobConnector())
    (tmp_path.parent.parent / "port").write_text(str(daemon.port))
    result = await run_connector(make_template("job"), connector=daemon)
    assert result.status == "succeeded"
    connector_registry.register(JobConnector())
    assert (await run_connector(make_template("job"))).status == "succeeded"
'''


def test_the_plugin_loads_from_its_entry_point_and_stops_daemons(tmp_path: Path) -> None:
    """A suite with no conftest, in strict asyncio mode, gets the fixtures from the
    installed entry point; the daemon it started is gone once the test ends."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_uses_kit.py").write_text(PLUGIN_SUITE)
    (suite / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp",
         str(tmp_path / "base"), str(suite)],
        cwd=suite, capture_output=True, text=True, timeout=60,
        env=cli_env(PYTHONPATH=str(FIXTURES)),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    port = int((tmp_path / "port").read_text())
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_the_docs_example_suite_passes() -> None:
    """docs/testing.md shows docs/examples/test_hello_connector.py; it must pass as shown."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "docs/examples/test_hello_connector.py"],
        cwd=REPO, capture_output=True, text=True, timeout=60, env=cli_env(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout
