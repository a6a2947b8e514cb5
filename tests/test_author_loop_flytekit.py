"""A connector author's loop for Flyte 1 (issue 29): the flytekit task class.

`init` a package, fill in its connector and flytekit task class from the docs' example
(docs/examples/jobsvc/), then run the task a flytekit user calls against a small REST job
service on 127.0.0.1: through flytekit's own local execution (`pyflyte run`, calling the
workflow, Ctrl-C), through `flyte-connector test module:task`, and serialized by flytekit
into the TaskTemplate propeller sends, served by `flyte-connector serve` through Flyte 1's
agent API (v1 stubs: create, get, delete).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

from connector_cli.cli import cli
from tests.conftest import REPO, cli_env
from tests.helpers.daemon_process import read_address
from tests.helpers.fake_jobsvc import JobService

pytest.importorskip("flytekit", reason="the flytekit task class needs the flytekit extra")
pytest.importorskip("flyteidl.service.agent_pb2", reason="needs the flyte1 extra")

from flyteidl.admin import agent_pb2 as v1
from flyteidl.core import tasks_pb2, types_pb2
from flyteidl.core.execution_pb2 import TaskExecution
from google.protobuf import json_format

from tests.helpers.flyte1_support import V1Stubs, primitives, v1_inputs

TOKEN = "jobsvc-kit-t0ken"
EXAMPLE = REPO / "docs" / "examples" / "jobsvc"
CONNECTOR = "flyte_connector_jobsvc.connector:JobsvcConnector"


@pytest.fixture(scope="module")
def service() -> Iterator[JobService]:
    jobs = JobService(TOKEN).serve()
    yield jobs
    jobs.close()


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`init jobsvc`, then the docs' connector and flytekit task class in place of the
    simulated ones, and the docs' flytekit workflow beside them."""
    root = tmp_path_factory.mktemp("author-kit") / "flyte-connector-jobsvc"
    made = CliRunner().invoke(cli, ["init", "jobsvc", "--dir", str(root)])
    assert made.exit_code == 0, made.output
    for name in ("connector.py", "task_flytekit.py"):
        assert (root / "flyte_connector_jobsvc" / name).exists()
        shutil.copy(EXAMPLE / name, root / "flyte_connector_jobsvc" / name)
    shutil.copy(EXAMPLE / "workflow_flytekit.py", root / "workflow_flytekit.py")
    return root


def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=60,
                          env=cli_env(PYTHONPATH=str(cwd), **env))


def test_flytekit_runs_the_workflow_locally_against_the_connector(
        package: Path, service: JobService) -> None:
    env = {"JOBSVC-TOKEN": TOKEN, "JOBSVC_URL": service.url}
    before = len(service.calls)
    # The docs' command: env 'JOBSVC-TOKEN=...' JOBSVC_URL=... pyflyte run workflow_flytekit.py report
    pyflyte = str(Path(sys.executable).parent / "pyflyte")
    done = run(pyflyte, "run", "workflow_flytekit.py", "report", "--text", "a b c",
               cwd=package, **env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "o0=3, o1=1.0" in done.stdout, done.stdout
    calls = service.calls[before:]
    assert calls[0][:2] == ("POST", "/jobs") and all(ok for _, _, ok in calls), calls
    job = service.jobs[f"j{len(service.jobs)}"]
    assert job["label"] == "nightly" and job["text"] == "a b c"
    done = run(sys.executable, "workflow_flytekit.py", cwd=package, **env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "DefaultNamedTupleOutput(o0=4, o1=2.0)"


def test_flyte_connector_test_runs_the_flytekit_task_object(package: Path, service: JobService) -> None:
    done = run(sys.executable, "-m", "connector_cli", "test", "workflow_flytekit:count",
               "--plugins", "none", "-m", CONNECTOR, "-i", "text=alpha beta", "-i", "seconds=0.2",
               "--secret", f"jobsvc-token={TOKEN}", "--poll-interval", "0.1", "--follow", "--json",
               cwd=package, JOBSVC_URL=service.url, JOBSVC_TOKEN=TOKEN)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded" and result["outputs"] == {"words": 2, "score": 1.0}
    assert result["task"]["form"] == "flytekit task" and result["task"]["type"] == "jobsvc"
    assert result["logs"] == ["counted 'alpha'", "counted 'beta'", "done: 2 words"]
    assert TOKEN not in done.stdout + done.stderr


def test_a_missing_secret_is_one_clear_line(package: Path, service: JobService) -> None:
    done = run(sys.executable, "workflow_flytekit.py", cwd=package, JOBSVC_URL=service.url)
    assert done.returncode == 1
    assert ("the task needs secret 'jobsvc-token' (for 'api_token'); set the environment "
            "variable _FSEC_JOBSVC-TOKEN or JOBSVC-TOKEN") in " ".join(done.stderr.split())
    assert not any(call[0] == "POST" for call in service.calls if not call[2])


def test_ctrl_c_deletes_the_job(package: Path, service: JobService) -> None:
    code = "import workflow_flytekit as w; w.count(text='interrupted run', seconds=30.0)"
    local = subprocess.Popen([sys.executable, "-c", code], cwd=package, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             env=cli_env(PYTHONPATH=str(package), JOBSVC_URL=service.url,
                                         **{"JOBSVC-TOKEN": TOKEN}))
    try:
        deadline = time.monotonic() + 30
        while not _jobs(service, "interrupted run") and time.monotonic() < deadline:
            time.sleep(0.1)
        [job] = _jobs(service, "interrupted run")
        time.sleep(0.5)  # into the mixin's polling, where its SIGINT handler deletes
        local.send_signal(signal.SIGINT)
        out, _ = local.communicate(timeout=30)
    finally:
        local.kill()
    assert job["cancelled"], out
    assert local.returncode == 1 and "never awaited" not in out, out


def _jobs(service: JobService, text: str) -> list[dict[str, Any]]:
    with service.lock:
        return [job for job in service.jobs.values() if job["text"] == text]


def serialized_template(package: Path) -> Any:
    """The TaskTemplate flytekit serializes for the docs' task (as `pyflyte register` does)."""
    code = ("import sys, workflow_flytekit as w\n"
            "from connector_cli.adapters.flytekit_tasks import task_template\n"
            "sys.stdout.buffer.write(task_template(w.count).SerializeToString())\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=package, capture_output=True,
                          timeout=60, env=cli_env(PYTHONPATH=str(package),
                                                  JOBSVC_URL="http://jobs.internal:8080"))
    assert done.returncode == 0, done.stderr.decode()
    return tasks_pb2.TaskTemplate.FromString(done.stdout)


def test_the_serialized_template_is_what_the_connector_reads(package: Path) -> None:
    template = serialized_template(package)
    assert (template.type, template.task_type_version) == ("jobsvc", 0)
    assert json_format.MessageToDict(template.custom) == {
        "label": "nightly", "secrets": {"api_token": "jobsvc-token"},
        "configs": {"endpoint": "http://jobs.internal:8080"}}
    def simple(variables: Any) -> dict[str, str]:  # a protobuf map: no order
        return {name: types_pb2.SimpleType.Name(v.type.simple) for name, v in variables.items()}

    assert simple(template.interface.inputs.variables) == {"text": "STRING", "seconds": "FLOAT"}
    assert simple(template.interface.outputs.variables) == {"words": "INTEGER", "score": "FLOAT"}
    assert not template.HasField("container")  # propeller hands it to the connector


def test_served_through_flyte_1s_agent_api(package: Path, service: JobService,
                                          tmp_path: Path) -> None:
    template = serialized_template(package)
    # Flyte 1's propeller sends no connection: the daemon's connections file gives the
    # token and the endpoint.
    (tmp_path / "jobsvc-token").write_text(TOKEN + "\n")
    (tmp_path / "connections.yaml").write_text(
        "connections:\n  - task_type: jobsvc\n    secrets:\n"
        f"      api_token: {{file: {tmp_path / 'jobsvc-token'}}}\n"
        f"    configs:\n      endpoint: {service.url}\n")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "connector_cli", "serve", "--host", "127.0.0.1", "--port", "0",
         "--metrics-port", "0", "--plugins", "none", "-m", CONNECTOR,
         "--connections", str(tmp_path / "connections.yaml")],
        cwd=package, stderr=subprocess.PIPE, text=True, env=cli_env(PYTHONPATH=str(package)))
    assert daemon.stderr is not None
    seen: list[str] = []
    try:
        address = read_address(daemon.stderr, 60, seen)
        assert address is not None, "".join(seen)
        finished = asyncio.run(asyncio.wait_for(_calls(address, template), 30))
        assert finished.phase == TaskExecution.SUCCEEDED and finished.state == v1.SUCCEEDED
        assert primitives(finished.outputs) == {"words": 4, "score": 2.0}
        [stopped] = _jobs(service, "never finished")
        assert stopped["cancelled"] and stopped["label"] == "nightly"
        assert all(ok for _, _, ok in service.calls)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, rest = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, "".join(seen) + rest
    assert TOKEN not in "".join(seen) + rest


async def _calls(address: str, template: Any) -> Any:
    """Create a job and poll it to the end; create another and delete it while it runs."""
    category = v1.TaskCategory(name="jobsvc", version=0)
    async with V1Stubs(address) as stubs:
        created = await stubs.tasks.CreateTask(v1.CreateTaskRequest(
            template=template, inputs=v1_inputs(text="served over flyte one", seconds=0.3),
            output_prefix="/tmp/kit-outputs"))
        deadline = time.monotonic() + 20
        while True:
            got = await stubs.tasks.GetTask(v1.GetTaskRequest(
                task_category=category, resource_meta=created.resource_meta))
            if got.resource.phase != TaskExecution.RUNNING or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        running = await stubs.tasks.CreateTask(v1.CreateTaskRequest(
            template=template, inputs=v1_inputs(text="never finished", seconds=30.0),
            output_prefix="/tmp/kit-outputs"))
        await stubs.tasks.DeleteTask(v1.DeleteTaskRequest(
            task_category=category, resource_meta=running.resource_meta))
        return got.resource
