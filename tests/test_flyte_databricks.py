"""The unmodified Databricks connector (flyteplugins-databricks) end to end, against a fake
of the Databricks Jobs REST API on 127.0.0.1: through `serve` with real gRPC stubs, and
through `flyte-connector test`. The daemon trusts the fake's CA via SSL_CERT_FILE."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("flyteplugins.databricks", reason="needs the flyte-test extra")

from flyteidl2.core.execution_pb2 import TaskExecution
from flyteidl2.core.tasks_pb2 import TaskTemplate
from google.protobuf.json_format import ParseDict

from tests.conftest import REPO, cli_env
from tests.fixtures.fake_databricks import TOKEN, FakeDatabricks, databricks_template
from tests.helpers.flyte_support import Stubs, start_ours, write_pki

SECRETS = {"databricks_token": TOKEN}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def fake(pki: dict[str, Path]) -> Iterator[FakeDatabricks]:
    server = FakeDatabricks(pki["server"], pki["server_key"]).start()
    yield server
    server.stop()


def template(fake: FakeDatabricks, run_name: str = "flyte-run") -> TaskTemplate:
    return ParseDict(databricks_template(fake.instance, run_name), TaskTemplate())


async def test_serve_runs_the_databricks_connector(
        fake: FakeDatabricks, pki: dict[str, Path], tmp_path: Path) -> None:
    daemon = start_ours(tmp_path, "--plugins", "databricks",
                              SSL_CERT_FILE=str(pki["ca"]))
    try:
        async with Stubs(daemon.address) as stubs:
            meta = await stubs.create(template(fake), secrets=SECRETS)
            assert json.loads(meta) == {"databricks_instance": fake.instance, "run_id": "1001"}
            phases = [await stubs.get("databricks", meta, SECRETS) for _ in range(3)]
            failing = await stubs.create(template(fake, "fail-run"), secrets=SECRETS)
            failed = [await stubs.get("databricks", failing, SECRETS) for _ in range(3)][-1]
            cancelled = await stubs.create(template(fake), secrets=SECRETS)
            await stubs.delete("databricks", cancelled, SECRETS)
            await stubs.delete("databricks", cancelled, SECRETS)
            after_cancel = await stubs.get("databricks", cancelled, SECRETS)
    finally:
        log = daemon.stop()
    assert [p.phase for p in phases] == [
        TaskExecution.QUEUED, TaskExecution.RUNNING, TaskExecution.SUCCEEDED]
    assert phases[1].message == "In run"
    assert phases[2].log_links[0].uri == f"https://{fake.instance}/#job/77/run/1001"
    assert (failed.phase, failed.message) == (TaskExecution.FAILED, "Task failed: boom")
    assert after_cancel.phase == TaskExecution.FAILED  # Flyte's own mapping of CANCELED
    assert ("POST", "/api/2.1/jobs/runs/cancel") in fake.requests
    assert fake.bad_tokens == 0
    assert log.count("returned phase UNDEFINED") == 1
    assert TOKEN not in log


def test_flyte_connector_test_runs_the_databricks_connector(
        fake: FakeDatabricks, pki: dict[str, Path], tmp_path: Path) -> None:
    env = cli_env(SSL_CERT_FILE=str(pki["ca"]))
    results = {}
    for run_name in ("flyte-run", "fail-run"):
        task = tmp_path / f"{run_name}.json"
        task.write_text(json.dumps(databricks_template(fake.instance, run_name)))
        done = subprocess.run(
            [sys.executable, "-m", "connector_cli", "test", str(task), "--plugins", "databricks",
             "--secret", f"databricks-token={TOKEN}", "--poll-interval", "0.05", "--json"],
            capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
        assert TOKEN not in done.stdout + done.stderr
        results[run_name] = (done.returncode, json.loads(done.stdout))
    code, ok = results["flyte-run"]
    assert code == 0 and ok["status"] == "succeeded", ok
    assert ok["polls"] == 3 and ok["log_links"][0]["name"] == "Databricks Console"
    code, bad = results["fail-run"]
    assert code == 1 and bad["status"] == "failed" and "Task failed: boom" in json.dumps(bad)
    assert fake.bad_tokens == 0
