"""`flyte-connector test` through the real CLI: click's runner in-process, subprocesses for
signals, and a real `flyte-connector serve` daemon for `--endpoint`."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner, Result

from connector_cli.cli import cli
from tests.conftest import CONNECTORS, JOB_TASK, REPO, cli_env
from tests.helpers.daemon_process import read_address

FLYTE_CONNECTOR = str(Path(sys.executable).with_name("flyte-connector"))
JOBS = ["--plugins", "none", "-m", "run_jobs"]
SECRET = "t0p-s3cret-value"


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in list(os.environ):
        if name.startswith(("FLYTE_CONNECTOR_", "FLYTE_SECRET_")):
            monkeypatch.delenv(name)
    monkeypatch.syspath_prepend(str(CONNECTORS))
    return CliRunner()


def run_test(runner: CliRunner, *args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(cli, ["test", str(JOB_TASK), *JOBS, "--poll-interval", "0.05", *args],
                         env=env)


def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_success_prints_events_and_outputs(runner: CliRunner, tmp_path: Path) -> None:
    result = run_test(runner, "-i", "seconds=0.1", "--output-prefix", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d task type 'job' v0 from .*run_job_task.yaml "
                     r"\(YAML TaskSpec\), in-process$", out, re.M)
    assert f"output prefix: {tmp_path / 'out'}" in out and (tmp_path / "out").is_dir()
    assert "RUNNING: working (poll 1" in out and "SUCCEEDED: done" in out
    assert out.count("log link: Job console https://jobs.example.com/job-") == 1
    assert re.search(r"succeeded in [\d.]+s after \d+ poll\(s\), phase SUCCEEDED: done", out)
    assert re.search(r"outputs:\n  answer = 42\n  job_id = \"job-\d+\"\n$", out)


def test_json_result_masks_secrets(runner: CliRunner, tmp_path: Path) -> None:
    secrets_file = tmp_path / "secrets.env"
    secrets_file.write_text(f"db_password={SECRET}-db\n")
    result = run_test(runner, "--json", "-i", "outcome=hang", "--timeout", "0.3",
                      "--secret", f"api_key={SECRET}", "--secrets-file", str(secrets_file),
                      "--logs", "--metrics", env={"FLYTE_SECRET_REGION_TOKEN": f"{SECRET}-env"})
    assert result.exit_code == 3, result.output
    assert SECRET not in result.output
    doc = json.loads(result.stdout)
    assert doc["status"] == "timed_out" and doc["exit_code"] == 3 and doc["phase"] == "RUNNING"
    assert doc["message"] == "working with key ****"
    assert doc["connection"]["secrets"] == {"api_key": "****", "db_password": "****", "region_token": "****"}
    assert doc["deleted"] is True and doc["delete_error"] is None
    assert doc["resource_meta"]["outcome"] == "hang" and doc["resource_meta"]["api_key_seen"] is True
    assert doc["log_links"] == [{"name": "Job console",
                                 "uri": f"https://jobs.example.com/{doc['resource_meta']['job_id']}"}]
    assert doc["logs"][0] == "line 0" and doc["metrics"][0]["metric"] == "cpu"
    assert doc["task"] == {"file": str(JOB_TASK), "form": "YAML TaskSpec", "type": "job", "version": 0}
    assert doc["execution"].startswith("local-") and doc["duration"] >= 0.3


def test_exit_codes_for_failed_aborted_and_missing_outputs(runner: CliRunner) -> None:
    result = run_test(runner, "-i", "outcome=fail")
    assert result.exit_code == 1 and "failed in" in result.stdout and "the job ran out of memory" in result.stdout
    result = run_test(runner, "-i", "outcome=abort", "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)["status"] == "aborted"
    result = run_test(runner, "-i", "outcome=no-outputs")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: SUCCEEDED without outputs: get returned none and there is no outputs.pb")


def test_timeout_deletes_and_says_so(runner: CliRunner, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    result = run_test(runner, "-i", "outcome=hang", "-i", f"record={record}", "--timeout", "0.3")
    assert result.exit_code == 3, result.output
    assert "timed out: deleting the job" in result.stdout and "deleted the job" in result.stdout
    assert record.read_text().splitlines()[-1].startswith("delete job-")
    result = run_test(runner, "-i", "outcome=hang", "-i", f"record={record}", "--timeout", "0.2", "--keep")
    assert result.exit_code == 3 and "--keep: not deleting the job" in result.stdout
    assert record.read_text().splitlines()[-1].startswith("get job-")


def test_connector_exceptions_are_one_line_and_debug_shows_the_traceback(runner: CliRunner, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    result = run_test(runner, "-i", "outcome=raise-create")
    assert result.exit_code == 1
    assert result.stderr == ("Error: JobConnector.create failed: RuntimeError: the job service refused the job "
                             "(run with --debug for the traceback)\n")
    result = runner.invoke(cli, ["--debug", "test", str(JOB_TASK), *JOBS, "-i", "outcome=raise-get",
                                 "-i", f"record={record}", "--poll-interval", "0.05"])
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr and "run_jobs.py" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: JobConnector.get failed: ValueError: lost track of job-")
    assert "error: deleting the job" in result.stdout and "deleted the job" in result.stdout
    assert record.read_text().splitlines()[-1].startswith("delete job-")


def test_bad_input_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    result = run_test(runner, "-i", "seconds=soon")
    assert (result.exit_code, result.stderr) == (2, "Error: input 'seconds': expected a float, got 'soon'\n")
    result = run_test(runner, "-i", "colour=blue")
    assert result.exit_code == 2 and "unknown input 'colour'; known inputs: outcome, seconds, record" in result.stderr
    garbage = tmp_path / "task.pb"
    garbage.write_bytes(b"\xff\x00\x01")
    result = runner.invoke(cli, ["test", str(garbage), *JOBS])
    assert result.exit_code == 2 and "is not a task template; tried binary TaskSpec" in result.stderr
    result = runner.invoke(cli, ["test", str(tmp_path / "missing.yaml"), *JOBS])
    assert result.exit_code == 2 and "cannot read task template" in result.stderr
    typo = tmp_path / "typo.yaml"
    typo.write_text(JOB_TASK.read_text().replace("type: job", "type: jbo"))
    result = runner.invoke(cli, ["test", str(typo), *JOBS])
    assert result.exit_code == 2
    assert "no connector for task type 'jbo' v0 (did you mean 'job'?); served: job v0, sync-job v0" in result.stderr
    result = run_test(runner, "--secret", "oops")
    assert result.exit_code == 2 and "--secret expects NAME=VALUE" in result.stderr


def test_inputs_file_and_pairs(runner: CliRunner, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.json"
    inputs.write_text('{"outcome": "fail", "seconds": 0}')
    result = run_test(runner, "--inputs", str(inputs), "--json")
    assert json.loads(result.stdout)["status"] == "failed"
    result = run_test(runner, "--inputs", str(inputs), "-i", "outcome=succeed", "--json")
    assert json.loads(result.stdout)["status"] == "succeeded"


def test_live_progress_renders_status_history_and_outputs_table(runner: CliRunner) -> None:
    result = run_test(runner, "--progress", "live", "-i", "seconds=0.2", "--follow")
    assert result.exit_code == 0, result.output
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stdout)
    assert "-> RUNNING: working" in plain and "-> SUCCEEDED: done" in plain
    assert re.search(r"RUNNING\s+[\d.]+s\s+poll \d+\s+working", plain)
    assert "log | line 0" in plain and "Outputs" in plain and re.search(r"answer\s+│\s+42", plain)


def test_docs_page_commands_run(tmp_path: Path) -> None:
    page = (REPO / "docs" / "test-command.md").read_text()
    blocks = re.findall(r"<!-- run: (\S+) -->\n```sh\n(.*?)```", page, re.S)
    assert blocks
    for cwd, body in blocks:
        for line in body.strip().splitlines():
            args = shlex.split(line)
            assert args[0] == "flyte-connector"
            proc = subprocess.run([FLYTE_CONNECTOR, *args[1:]], cwd=REPO / cwd, env=cli_env(),
                                  capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
            if "--json" in args:
                doc = json.loads(proc.stdout)
                assert doc["outputs"] == {"greeting": "Hello, Grace!"}
            else:
                assert 'greeting = "Hello, Ada!"' in proc.stdout


def start_test(*args: str, cwd: Path = CONNECTORS) -> subprocess.Popen[str]:
    return subprocess.Popen([FLYTE_CONNECTOR, "test", str(JOB_TASK), "--poll-interval", "0.1", *args],
                            cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.mark.parametrize("where", ["in-process", "daemon"])
def test_sigint_deletes_the_job_and_exits_130(tmp_path: Path, where: str, request: pytest.FixtureRequest) -> None:
    record = tmp_path / "record.txt"
    target = ["--endpoint", request.getfixturevalue("daemon")] if where == "daemon" else JOBS
    proc = start_test(*target, "-i", "outcome=hang", "-i", f"record={record}")
    try:
        wait_for(lambda: record.exists() and "get job-" in record.read_text())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "SIGINT: stopping" in out and "interrupted: deleting the job" in out and "deleted the job" in out
    lines = record.read_text().splitlines()
    job = lines[0].split()[1]
    assert lines[-1] == f"delete {job}"


@pytest.fixture(scope="module")
def daemon() -> Iterator[str]:
    """A real `flyte-connector serve` serving the test connectors; yields HOST:PORT."""
    proc = subprocess.Popen(
        [FLYTE_CONNECTOR, "serve", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
         "--plugins", "none", "-m", "run_jobs"],
        cwd=CONNECTORS, env=cli_env(), stderr=subprocess.PIPE, text=True,
    )
    try:
        seen: list[str] = []
        address = read_address(proc.stderr, 30, seen)
        assert address, "the daemon did not start listening:\n" + "".join(seen)
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        proc.stderr.close()


def test_against_a_daemon(runner: CliRunner, daemon: str, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["test", str(JOB_TASK), "--endpoint", daemon, "--poll-interval", "0.05",
                                 "-i", "seconds=0.1", "--logs", "--json", "--secret", f"api_key={SECRET}"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["status"] == "succeeded" and doc["outputs"]["answer"] == 42
    assert doc["target"] == f"daemon at {daemon}" and doc["logs"][:2] == ["line 0", "line 1"]
    assert SECRET not in result.output and doc["resource_meta"]["api_key_seen"] is True
    record = tmp_path / "record.txt"
    result = runner.invoke(cli, ["test", str(JOB_TASK), "--endpoint", daemon, "-i", "outcome=raise-get",
                                 "-i", f"record={record}"])
    assert result.exit_code == 1
    assert re.match(r"Error: Job.get failed: INTERNAL: get for task type 'job' failed: ValueError: lost track "
                    r"of job-\d+ \(the daemon's log has the traceback\)\n$", result.stderr)
    assert record.read_text().splitlines()[-1].startswith("delete job-")
    result = runner.invoke(cli, ["test", str(JOB_TASK), "--endpoint", daemon, "-i", "outcome=hang",
                                 "--timeout", "0.3", "--json"])
    assert result.exit_code == 3 and json.loads(result.stdout)["deleted"] is True
    typo = tmp_path / "typo.yaml"
    typo.write_text(JOB_TASK.read_text().replace("type: job", "type: jbo"))
    result = runner.invoke(cli, ["test", str(typo), "--endpoint", daemon])
    assert result.exit_code == 2
    assert f"(did you mean 'job'?); the daemon at {daemon} serves: job v0, sync-job v0" in result.stderr


def test_json_prints_one_document_whatever_goes_wrong(runner: CliRunner, tmp_path: Path) -> None:
    result = run_test(runner, "-i", "seconds=soon", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {"status": "invalid_input", "exit_code": 2,
                                         "error": "input 'seconds': expected a float, got 'soon'"}
    typo = tmp_path / "typo.yaml"
    typo.write_text(JOB_TASK.read_text().replace("type: job", "type: jbo"))
    result = runner.invoke(cli, ["test", str(typo), *JOBS, "--json"])
    assert result.exit_code == 2 and "did you mean 'job'" in json.loads(result.stdout)["error"]
    result = run_test(runner, "--json", "--get-failures", "-1")
    assert result.exit_code == 2 and json.loads(result.stdout)["status"] == "invalid_input"
    assert "Invalid value for '--get-failures'" in json.loads(result.stdout)["error"]
    result = run_test(runner, "-i", "outcome=raise-create", "--json")
    doc = json.loads(result.stdout)  # the run's own document, and only that one
    assert (result.exit_code, doc["status"]) == (1, "error") and "phase" in doc
    assert doc["error"] == "JobConnector.create failed: RuntimeError: the job service refused the job"


def test_failed_gets_are_tolerated_then_the_job_is_deleted(runner: CliRunner) -> None:
    result = run_test(runner, "-i", "outcome=flaky-get", "-i", "seconds=2", "--progress", "plain")
    assert result.exit_code == 0, result.output
    assert "failed get 2 of 5 tolerated" in result.stdout
    result = run_test(runner, "-i", "outcome=flaky-get", "-i", "seconds=2", "--get-failures", "1")
    assert result.exit_code == 1 and "deleted the job" in result.stdout
    assert "(transient upstream error): the job service answered 503" in result.stderr


@pytest.mark.parametrize("text,expected", [
    ('{"outcome": "succeed", "bad": "\\ud800"}', "input 'bad' holds a lone surrogate"),
    ('{"outcome": "succeed", "outcome": "fail"}', "key 'outcome' appears twice"),
])
def test_inputs_files_that_are_not_clean_json_exit_2_naming_why(
        runner: CliRunner, tmp_path: Path, text: str, expected: str) -> None:
    """Issue 28, item 16: a lone surrogate exited 1 (not naming the input); a duplicate
    key silently kept the last value."""
    inputs = tmp_path / "inputs.json"
    inputs.write_text(text)
    result = run_test(runner, "--inputs", str(inputs))
    assert result.exit_code == 2, result.output
    assert expected in result.output
