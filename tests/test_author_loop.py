"""A connector author's whole loop (issue 29), as docs/writing-a-connector.md tells it.

`init` a package for a new task type, fill in its connector and task class from the docs'
example (docs/examples/jobsvc/), then run the task a Flyte 2 user calls against a small
REST job service on 127.0.0.1: through the Flyte SDK's own local execution, through
`flyte-connector test module:task`, and served by `flyte-connector serve`. The API token
is a Flyte secret the task maps to `api_token`; served, the daemon's connections file
gives it to `get_logs` and `get_metrics` (their requests carry no connection).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from connector_cli.cli import cli
from tests.conftest import REPO, cli_env
from tests.helpers.daemon_process import read_address
from tests.helpers.fake_jobsvc import JobService

pytest.importorskip("flyte", reason="the task class needs the flyte extra (make install-flyte)")

TOKEN = "jobsvc-s3cr3t-token"
EXAMPLE = REPO / "docs" / "examples" / "jobsvc"
CONNECTOR = "flyte_connector_jobsvc.connector:JobsvcConnector"


@pytest.fixture(scope="module")
def service() -> Iterator[JobService]:
    jobs = JobService(TOKEN).serve()
    yield jobs
    jobs.close()


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`init jobsvc`, then the docs' connector and task class in place of the simulated ones."""
    root = tmp_path_factory.mktemp("author") / "flyte-connector-jobsvc"
    made = CliRunner().invoke(cli, ["init", "jobsvc", "--dir", str(root)])
    assert made.exit_code == 0, made.output
    for name in ("connector.py", "task.py"):
        assert (root / "flyte_connector_jobsvc" / name).exists()
        shutil.copy(EXAMPLE / name, root / "flyte_connector_jobsvc" / name)
    shutil.copy(EXAMPLE / "workflow.py", root / "workflow.py")
    return root


def run(*args: str, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=cli_env(PYTHONPATH=str(cwd), **env))


def test_the_flyte_sdk_runs_the_workflow_locally_against_the_connector(package: Path, service: JobService) -> None:
    before = len(service.calls)
    # The docs' command: env 'jobsvc-token=...' JOBSVC_URL=... python workflow.py
    done = run("workflow.py", cwd=package, **{"jobsvc-token": TOKEN, "JOBSVC_URL": service.url})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "4 words, score 2.0"
    calls = service.calls[before:]
    assert calls[0][:2] == ("POST", "/jobs") and all(ok for _, _, ok in calls), calls
    job = service.jobs[f"j{len(service.jobs)}"]
    assert job["label"] == "nightly" and job["text"] == "one two three four"
    code = ("import flyte, workflow; flyte.init(); "
            "print(tuple(flyte.run(workflow.count, text='a b c', seconds=0.0).outputs()))")
    done = run("-c", code, cwd=package, **{"jobsvc-token": TOKEN, "JOBSVC_URL": service.url})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "(3, 1.0)"  # declared order, declared types


def test_flyte_connector_test_runs_the_task_object_with_logs(package: Path, service: JobService) -> None:
    done = run("-m", "connector_cli", "test", "workflow:count", "--plugins", "none", "-m", CONNECTOR,
               "-i", "text=alpha beta gamma", "-i", "seconds=0.6", "--secret", f"jobsvc-token={TOKEN}",
               "--poll-interval", "0.1", "--follow", "--json", cwd=package,
               JOBSVC_URL=service.url, JOBSVC_TOKEN=TOKEN)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded" and result["outputs"] == {"words": 3, "score": 1.0}
    assert result["task"]["form"] == "Flyte SDK task" and result["task"]["type"] == "jobsvc"
    assert result["logs"] == ["counted 'alpha'", "counted 'beta'", "counted 'gamma'", "done: 3 words"]
    assert result["connection"] == {"secrets": {"api_token": "****", "jobsvc-token": "****"},
                                    "configs": {"endpoint": service.url}}
    assert TOKEN not in done.stdout + done.stderr


def test_a_missing_secret_and_a_bad_input_are_one_clear_line(package: Path, service: JobService) -> None:
    done = run("-m", "connector_cli", "test", "workflow:count", "--plugins", "none", "-i", "text=x",
               "-i", "seconds=0", "--secret", "jobsvc-token=x", cwd=package, JOBSVC_URL=service.url)
    assert done.returncode == 2 and done.stderr.endswith(
        f"; the task names {CONNECTOR}: install its package, or pass -m {CONNECTOR}\n"), done.stderr
    base = ["-m", "connector_cli", "test", "workflow:count", "--plugins", "none", "-m", CONNECTOR]
    done = run(*base, "-i", "text=x", "-i", "seconds=0", cwd=package, JOBSVC_URL=service.url)
    assert done.returncode == 2
    assert done.stderr == ("Error: the template needs secret 'jobsvc-token' (for 'api_token'); pass "
                           "--secret jobsvc-token=VALUE, a --secrets-file, or FLYTE_SECRET_JOBSVC_TOKEN\n")
    done = run(*base, "-i", "text=x", "-i", "seconds=0", "--json", cwd=package, JOBSVC_URL=service.url,
               FLYTE_SECRET_JOBSVC_TOKEN=TOKEN)  # the variable the hint names works
    assert done.returncode == 0 and json.loads(done.stdout)["status"] == "succeeded", done.stdout
    done = run(*base, "-i", "text=x", "-i", "seconds=soon", "--json", cwd=package, JOBSVC_URL=service.url,
               FLYTE_SECRET_JOBSVC_TOKEN=TOKEN)
    assert done.returncode == 2
    assert json.loads(done.stdout) == {"status": "invalid_input", "exit_code": 2,
                                       "error": "input 'seconds': expected a float, got 'soon'"}
    done = run(*base, "-i", "text=x", "-i", "seconds=0", "--secret", "jobsvc-token=wrong", cwd=package,
               JOBSVC_URL=service.url)
    assert done.returncode == 1
    assert done.stderr.startswith("Error: JobsvcConnector.create failed: RuntimeError: POST "
                                  f"{service.url}/jobs: HTTP 401")


def test_served_the_backend_way_with_the_token_reaching_get_logs(
        package: Path, service: JobService, tmp_path: Path) -> None:
    # The daemon's connections file (as the guide shows it) gives get_logs and get_metrics
    # the token; the daemon's environment has none.
    (tmp_path / "jobsvc-token").write_text(TOKEN + "\n")
    (tmp_path / "connections.yaml").write_text(
        "connections:\n  - task_type: jobsvc\n    secrets:\n"
        f"      api_token: {{file: {tmp_path / 'jobsvc-token'}}}\n")
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
        before = len(service.calls)
        done = run("-m", "connector_cli", "test", "workflow:count", "--endpoint", address,
                   "-i", "text=served words here now", "-i", "seconds=0.3",
                   "--secret", f"jobsvc-token={TOKEN}", "--poll-interval", "0.1", "--logs", "--metrics",
                   "--json",
                   cwd=package, JOBSVC_URL=service.url)
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(done.stdout)
        assert result["status"] == "succeeded" and result["outputs"] == {"words": 4, "score": 2.0}
        assert result["logs"][-1] == "done: 4 words" and len(result["logs"]) == 5
        [words] = result["metrics"]
        series = words["data"]["result"][0]
        assert words["metric"] == "words_counted" and series["values"][0][1] == "4"
        assert series["metric"]["job"] == result["resource_meta"]["job_id"]
        log_calls = [call for call in service.calls[before:] if call[1].endswith("/logs")]
        assert log_calls and all(ok for _, _, ok in service.calls[before:])
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, rest = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, "".join(seen) + rest
    assert TOKEN not in "".join(seen) + rest
