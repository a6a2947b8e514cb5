"""Connectors written for the Flyte SDK (`flyte.connectors`), served unchanged.

The four `flyteplugins-*` packages and tests/fixtures/connectors/flyte_style.py are real
Flyte SDK connectors; `make test` installs the `flyte` and `flyte-test` extras.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("flyte.connectors", reason="needs the flyte extra (make test installs it)")

import grpc
from flyteidl2.core.execution_pb2 import TaskExecution

from connector_cli.discovery import discover, inventory
from connector_cli.sdk.registry import ConnectorRegistry
from connector_cli.testing import make_inputs, make_template, serve_in_background
from tests.conftest import REPO, cli_env, run_python
from tests.helpers.flyte_support import Process, Stubs, free_port

FLYTE_STYLE = "tests.fixtures.connectors.flyte_style"
PLUGINS = {
    "bigquery": ("Bigquery Connector", [("bigquery_query_job_task", 0)]),
    "databricks": ("Databricks Connector", [("databricks", 0)]),
    "slurm": ("Slurm Connector", [("slurm", 0), ("slurm_script", 0)]),
    "snowflake": ("Snowflake Connector", [("snowflake", 0)]),
}
SECRET = "s3cr3t-counter-key"


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connector_cli", *args], capture_output=True,
                          text=True, timeout=120, env=cli_env(**env), cwd=REPO)


def test_list_shows_the_four_flyteplugins_with_their_task_types_and_origin() -> None:
    listed = run_cli("list", "--json", "--plugins", ",".join(PLUGINS))
    assert listed.returncode == 0, listed.stdout + listed.stderr
    data = json.loads(listed.stdout)
    assert data["failed"] == []
    rows = {row["source"]["name"]: row for row in data["connectors"]}
    for plugin, (name, categories) in PLUGINS.items():
        row = rows[plugin]
        assert row["name"] == name
        assert [(t["name"], t["version"]) for t in row["task_types"]] == categories
        assert row["sdk"] == "flyte-sdk"
        assert row["source"]["distribution"] == f"flyteplugins-{plugin}"
    table = run_cli("list", "--plugins", "databricks")
    assert table.returncode == 0 and "(flyte-sdk)" in table.stdout, table.stdout


def test_without_the_flyte_sdk_a_flyte_plugin_names_the_fix() -> None:
    code = (
        "import sys\n"
        "sys.modules['flyte'] = None  # as if the Flyte SDK were not installed\n"
        "from connector_cli.cli import main\n"
        "main(['list', '--json', '--plugins', 'databricks'])\n"
    )
    done = run_python(code)
    assert done.returncode == 1, done.stderr
    [failure] = json.loads(done.stdout)["failed"]
    assert failure["reason"] == "needs-flyte-sdk"
    assert "pip install 'flyte-connector[flyte]'" in failure["error"]
    assert "not a connector class" not in failure["error"]


async def test_the_four_flyteplugins_are_served_and_counted() -> None:
    async with serve_in_background(plugins=list(PLUGINS), metrics_port=0) as daemon:
        served = {c.name: [(t.name, t.version) for t in c.supported_task_categories]
                  for c in await daemon.client.list_connectors()}
        assert served == dict(PLUGINS.values())
        async with Stubs(daemon.address) as stubs:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stubs.get("databricks", b"not json")
            meta = json.dumps({"databricks_instance": "127.0.0.1:9", "run_id": "1"}).encode()
            for call in (stubs.logs, stubs.metrics):
                with pytest.raises(grpc.aio.AioRpcError) as missing:
                    await call("databricks", meta)
                assert missing.value.code() is grpc.StatusCode.UNIMPLEMENTED
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "DatabricksJobMetadata" in (caught.value.details() or "")
        assert daemon.metrics_url is not None
        url = daemon.metrics_url

        def scrape() -> str:  # off the event loop, which serves /metrics too
            with urllib.request.urlopen(url, timeout=10) as answer:
                return str(answer.read().decode())

        metrics = await asyncio.to_thread(scrape)
        assert 'task_type="databricks"' in metrics and "INVALID_ARGUMENT" in metrics


def counter_request(n: int = 3) -> tuple[object, object]:
    template = make_template("flyte_counter", inputs={"n": int, "label": str},
                             outputs={"total": int})
    return template, make_inputs(template, {"n": n, "label": "abc"})


async def test_flyte_semantics_inputs_meta_phases_outputs_logs(
        caplog: pytest.LogCaptureFixture) -> None:
    from tests.fixtures.connectors.flyte_style import CounterMeta

    template, inputs = counter_request()
    async with serve_in_background(modules=[FLYTE_STYLE]) as daemon:
        async with Stubs(daemon.address) as stubs:
            meta = await stubs.create(template, inputs, secrets={"api_key": SECRET},
                                      configs={"region": "eu"})
            assert meta == CounterMeta(job_id="job-3-abc-eu", n=3, label="abc").encode()
            first = await stubs.get("flyte_counter", meta)
            second = await stubs.get("flyte_counter", meta)
            third = await stubs.get("flyte_counter", meta)
            frame_template = make_template("flyte_frame", inputs={"rows": int})
            frame_meta = await stubs.create(frame_template, make_inputs(frame_template,
                                                                        {"rows": 2}))
            frame = await stubs.get("flyte_frame", frame_meta)
            pages = await stubs.logs("flyte_counter", meta)
            single = await stubs.logs("flyte_frame", frame_meta)
            await stubs.get("flyte_counter", meta)
    assert (first.phase, first.message) == (TaskExecution.QUEUED, "not scheduled yet")
    assert second.phase == TaskExecution.RUNNING and second.custom_info["job"] == "job-3-abc-eu"
    assert [link.name for link in second.log_links] == ["Counter"]
    assert third.phase == TaskExecution.SUCCEEDED
    literals = {n.name: n.value.scalar.primitive for n in third.outputs.literals}
    assert literals["total"].integer == 6 and literals["label"].string_value == "ABC"
    sd = frame.outputs.literals[0].value.scalar.structured_dataset
    assert sd.uri == "bq://project:dataset.table_2"
    assert [len(p.body.lines) for p in pages[:2]] == [2, 2] and pages[2].header.token == "next"
    assert single[0].body.lines[0].message == "2 rows"
    undefined = [r for r in caplog.records if "UNDEFINED" in r.getMessage()]
    assert len(undefined) == 1 and undefined[0].levelname == "WARNING"


async def test_a_blocking_flyte_connector_does_not_stall_the_daemon() -> None:
    template = make_template("flyte_sleepy", inputs={"seconds": float})
    async with serve_in_background(modules=[FLYTE_STYLE], client_timeout=60) as daemon:
        async with Stubs(daemon.address) as stubs:
            meta = await stubs.create(template, make_inputs(template, {"seconds": 1.0}))
            launched = time.perf_counter()
            calls = [asyncio.ensure_future(stubs.get("flyte_sleepy", meta)) for _ in range(32)]
            await asyncio.sleep(0.3)
            latencies = []
            for _ in range(10):
                started = time.perf_counter()
                await stubs.list()
                latencies.append(time.perf_counter() - started)
            counter_template, inputs = counter_request(5)
            started = time.perf_counter()
            other = await stubs.create(counter_template, inputs, secrets={"api_key": SECRET})
            other_latency = time.perf_counter() - started
            # the connector's own loop runs its 1 s gets one after another
            assert sum(call.done() for call in calls) <= time.perf_counter() - launched + 1
            finished, _ = await asyncio.wait(calls, timeout=20,
                                             return_when=asyncio.FIRST_COMPLETED)
            assert finished, "no GetTask finished within 20 s"
            done = finished.pop().result()
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
    print(f"ListConnectors during 32 blocked GetTasks: max {max(latencies) * 1000:.1f} ms, "  # noqa: T201
          f"median {sorted(latencies)[5] * 1000:.1f} ms; other connector's CreateTask "
          f"{other_latency * 1000:.1f} ms")
    assert done.phase == TaskExecution.SUCCEEDED and other
    assert max(latencies) < 0.5, latencies
    assert other_latency < 0.5


def test_registry_gets_the_same_connectors_again() -> None:
    """A second discovery (another test, another server) serves the same wrappers."""
    first, second = ConnectorRegistry(), ConnectorRegistry()
    assert not discover(first, [FLYTE_STYLE], ()).failed
    assert not discover(second, [FLYTE_STYLE], ()).failed
    assert first.categories() == second.categories()
    assert first.get_connector("flyte_counter") is second.get_connector("flyte_counter")
    rows = inventory(second)["connectors"]
    assert {r["sdk"] for r in rows} == {"flyte-sdk"}


async def test_serve_takes_the_c0_command_line(tmp_path: Path) -> None:
    port, metrics = free_port(), free_port()
    daemon = Process(
        [sys.executable, "-m", "connector_cli", "serve", "--host", "127.0.0.1",
         "--port", str(port), "--prometheus_port", str(metrics), "--worker", "4",
         "--timeout", "8", "--plugins", "none", "--modules", "flyte_style"],
        tmp_path / "serve.log")
    daemon.ready(f"127.0.0.1:{port}")
    template, inputs = counter_request()
    async with Stubs(daemon.address) as stubs:
        assert "Counter Connector" in await stubs.list()
        meta = await stubs.create(template, inputs, secrets={"api_key": SECRET})
        await stubs.get("flyte_counter", meta)
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as answer:
        scraped = answer.read().decode()
    assert 'task_type="flyte_counter"' in scraped
    assert daemon.proc.wait(60) == 0, daemon.text()
    log = daemon.stop()
    assert "4 workers" in log and "timeout of 8s reached" in log


COUNTER_TASK = {
    "type": "flyte_counter",
    "interface": {"inputs": {"variables": [
        {"key": "n", "value": {"type": {"simple": "INTEGER"}}},
        {"key": "label", "value": {"type": {"simple": "STRING"}}},
    ]}},
    "custom": {"secrets": {"api_key": "counter-key"}},
}


async def test_flyte_connector_test_runs_a_flyte_connector_here_and_on_a_daemon(
        tmp_path: Path) -> None:
    task = tmp_path / "counter.json"
    task.write_text(json.dumps(COUNTER_TASK))
    args = ["test", str(task), "-i", "n=4", "-i", "label=xy", "--secret",
            f"counter-key={SECRET}", "--poll-interval", "0.05", "--logs", "--json"]
    env = {"PYTHONPATH": str(REPO / "tests" / "fixtures" / "connectors")}
    here = run_cli(*args, "--plugins", "none", "-m", "flyte_style", **env)
    daemon = Process([sys.executable, "-m", "connector_cli", "serve", "--host", "127.0.0.1",
                      "--port", str(port := free_port()), "--metrics-port", "0",
                      "--plugins", "none", "-m", "flyte_style"], tmp_path / "daemon.log")
    daemon.ready(f"127.0.0.1:{port}")
    try:
        there = run_cli(*args, "--endpoint", daemon.address)
    finally:
        log = daemon.stop()
    for done in (here, there):
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(done.stdout)
        assert result["outputs"] == {"total": 8, "label": "XY", "ratio": 1.0, "ok": True}
        assert result["polls"] == 3 and len(result["logs"]) >= 4
        assert SECRET not in done.stdout + done.stderr
    assert json.loads(there.stdout)["target"] != json.loads(here.stdout)["target"]
    assert SECRET not in log


def test_a_flyte_connector_class_nobody_registered_is_instantiated() -> None:
    registry = ConnectorRegistry()
    module = "tests.fixtures.connectors.flyte_class_only"
    report = discover(registry, [f"{module}:PingConnector", f"{module}:HalfConnector"], ())
    assert registry.categories() == [("flyte_ping", 0)]
    [half] = report.failed
    assert half.error == "HalfConnector does not implement delete, get"
    assert registry.get_connector("flyte_ping").name == "Ping Connector"


async def test_ping_answers_with_configs_as_keywords() -> None:
    module = "tests.fixtures.connectors.flyte_class_only:PingConnector"
    async with serve_in_background(modules=[module]) as daemon:
        async with Stubs(daemon.address) as stubs:
            meta = await stubs.create(make_template("flyte_ping"), configs={"host": "db1"})
            resource = await stubs.get("flyte_ping", meta)
    assert json.loads(meta) == {"target": "db1"}
    assert (resource.phase, resource.message) == (TaskExecution.SUCCEEDED, "pong from db1")


def test_a_class_is_instantiated_once_for_every_registry() -> None:
    spec = "tests.fixtures.connectors.flyte_class_only:PingConnector"
    first, second = ConnectorRegistry(), ConnectorRegistry()
    discover(first, [spec], ())
    discover(second, [spec], ())
    assert first.get_connector("flyte_ping") is second.get_connector("flyte_ping")


async def test_the_flyte_plugins_never_leave_loopback(tmp_path: Path) -> None:
    """Serving the four flyteplugins and calling BigQuery and Databricks without
    credentials makes no connection and no name lookup off this machine (google-auth
    would probe the metadata server; the suite's conftest.py turns that off)."""
    audit = tmp_path / "net.log"
    audit.touch()
    hook = REPO / "tests" / "helpers" / "netaudit"
    port = free_port()
    daemon = Process(
        [sys.executable, "-m", "connector_cli", "serve", "--host", "127.0.0.1", "--port",
         str(port), "--metrics-port", "0", "--plugins", ",".join(PLUGINS)],
        tmp_path / "ours.log", NET_AUDIT_LOG=str(audit),
        PYTHONPATH=os.pathsep.join([str(hook), str(REPO)]),
    ).ready(f"127.0.0.1:{port}")
    try:
        async with Stubs(daemon.address) as stubs:
            assert len(await stubs.list()) == 4
            for task_type, custom in [
                ("bigquery_query_job_task", {"ProjectID": "p", "Location": "US"}),
                ("databricks", {"databricksConf": {}, "databricksInstance": "127.0.0.1:9"}),
            ]:
                template = make_template(task_type, custom=custom)
                with pytest.raises(grpc.aio.AioRpcError):
                    await stubs.create(template, secrets={"databricks_token": "t"})
    finally:
        log = daemon.stop()
    assert "DefaultCredentialsError" in log  # BigQuery did look for credentials
    assert audit.read_text() == "", audit.read_text()
