"""Connectors written for flytekit (Flyte 1's SDK), served unchanged through both APIs.

tests/fixtures/connectors/flytekit_style.py holds real flytekit connectors (async, blocking
and sync); `make test` installs the `flytekit` extra (flytekit 1.16 and flyteidl).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("flytekit.extend.backend.base_connector", reason="needs the flytekit extra")

import grpc
from flyteidl.admin import agent_pb2 as v1
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.core.execution_pb2 import TaskExecution

from connector_cli.discovery import NEEDS_FLYTEKIT, discover, inventory
from connector_cli.sdk.registry import ConnectorRegistry
from connector_cli.testing import serve_in_background
from tests.conftest import REPO, cli_env, run_python
from tests.helpers.flyte1_support import V1Stubs, primitives, v1_inputs, v1_template
from tests.helpers.flyte_support import Stubs

KIT = "tests.fixtures.connectors.flytekit_style"
TOKEN = "kit-t0ken-value"
CHAT_KEY = "sk-chat-s3cret-key"


@pytest.fixture(autouse=True)
def kit_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """flytekit's secrets lookup reads `_FSEC_<KEY>` from the daemon's environment."""
    monkeypatch.setenv("_FSEC_KIT_TOKEN", TOKEN)
    monkeypatch.setenv("_FSEC_KIT_CHAT_KEY", CHAT_KEY)


def counter_template() -> Any:
    return v1_template("kit_counter", inputs={"n": "int", "label": "str"},
                       outputs={"total": "int", "label": "str"})


def test_discovery_wraps_flytekit_connectors_and_serves_flytekits_own() -> None:
    registry = ConnectorRegistry()
    report = discover(registry, modules=[KIT], plugins=["flytekit"])
    rows = inventory(registry, report)["connectors"]
    kinds = {row["name"]: (row["sdk"], row["source"]["description"]) for row in rows}
    assert not report.failed
    assert kinds["Kit Counter Connector"] == ("flytekit", f"module {KIT}")
    assert kinds["Kit Chat Connector"][0] == "flytekit"
    assert kinds["Sensor"][1].startswith("flytekit 1.16")  # pyflyte serves these two too
    assert kinds["Webhook Connector"][0] == "flytekit"
    # a second registry gets the same wrapped instances (one own loop per connector)
    again = ConnectorRegistry()
    discover(again, modules=[KIT], plugins=())
    assert again.get_connector("kit_counter") is registry.get_connector("kit_counter")


@pytest.fixture(scope="module")
def kit_dists(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/fixtures/kit_dists installed by pip into a directory: packages with entry
    points in flytekit's `flytekit.plugins` group, as flytekitplugins-* declare them."""
    target = tmp_path_factory.mktemp("kit-site")
    build = tmp_path_factory.mktemp("kit-build")
    sources = []
    for dist in sorted((REPO / "tests" / "fixtures" / "kit_dists").iterdir()):
        subprocess.run(["cp", "-r", str(dist), str(build / dist.name)], check=True)
        sources.append(str(build / dist.name))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-index", "--no-build-isolation", "--disable-pip-version-check",
                    "--target", str(target), *sources], check=True, timeout=300)
    return target


def test_list_finds_flytekit_plugins_by_their_entry_points(kit_dists: Path) -> None:
    """What `import flytekit` loads (the flytekit.plugins group) is discovered as plugins,
    each in isolation: one with a connector is listed with origin flytekit, one without (a
    type plugin) is neither loaded nor failed, a broken one fails alone (under `import
    flytekit` it would break every one), and flytekit's own sensor and webhook come along."""
    env = cli_env(PYTHONPATH=str(kit_dists),
                  FLYTE_CONNECTOR_PLUGINS="fk-demo,fk-types,fk-broken,flytekit")
    listed = subprocess.run([sys.executable, "-m", "connector_cli", "list", "--json"],
                            capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert listed.returncode == 1, listed.stderr  # list's status when a plugin failed
    data = json.loads(listed.stdout)
    rows = {row["name"]: row for row in data["connectors"]}
    broken = "importing 'fkplugins_broken' raised RuntimeError: this plugin is broken on purpose"
    assert [(f["plugin"], f["error"]) for f in data["failed"]] == [("broken", broken)]
    assert set(rows) == {"Demo Connector", "Sensor", "Webhook Connector"}
    demo = rows["Demo Connector"]
    assert demo["sdk"] == "flytekit" and demo["task_types"] == [{"name": "demo", "version": 2}]
    assert demo["source"]["description"] == "fk-demo 0.4.0"
    text = subprocess.run([sys.executable, "-m", "connector_cli", "list"], capture_output=True,
                          text=True, timeout=120, env=env, cwd=REPO)
    assert "fk-demo 0.4.0 (flytekit)" in " ".join(text.stdout.split()), text.stdout


def test_without_flytekit_a_flytekit_plugin_names_the_fix() -> None:
    code = (
        "import sys\n"
        "sys.modules['flytekit'] = None\n"  # as if flytekit were not installed
        "from connector_cli.discovery import discover\n"
        "from connector_cli.sdk.registry import ConnectorRegistry\n"
        f"report = discover(ConnectorRegistry(), modules=[{KIT!r}], plugins=())\n"
        "print(report.failed[0].reason, '|', report.failed[0].error)\n"
    )
    result = run_python(code)
    reason, _, error = result.stdout.strip().partition(" | ")
    assert reason == NEEDS_FLYTEKIT, result.stdout + result.stderr
    assert "written for flytekit" in error and "pip install 'flyte-connector[flytekit]'" in error


async def test_a_flytekit_connector_runs_through_v1_and_v2_with_logs_and_metrics(
        caplog: pytest.LogCaptureFixture) -> None:
    from tests.fixtures.connectors.flytekit_style import KitMeta

    template = counter_template()
    async with serve_in_background(modules=[KIT]) as daemon:
        async with V1Stubs(daemon.address) as old, Stubs(daemon.address) as new:
            agents = await old.agents()
            listed = await new.list()
            meta = await old.create(template, v1_inputs(n=3, label="abc"))
            running = await old.get("kit_counter", meta)
            done = await old.get("kit_counter", meta)
            via_v2 = [await new.get("kit_counter", meta) for _ in range(2)]
            logs = [p async for p in old.tasks.GetTaskLogs(v1.GetTaskLogsRequest(
                task_category=v1.TaskCategory(name="kit_counter"), resource_meta=meta))]
            metrics = await old.tasks.GetTaskMetrics(v1.GetTaskMetricsRequest(
                task_category=v1.TaskCategory(name="kit_counter"), resource_meta=meta))
            await old.delete("kit_counter", meta)
            v2_meta = await new.create(
                pb.CreateTaskRequest.FromString(v1.CreateTaskRequest(
                    template=template, inputs=v1_inputs(n=4, label="v2")).SerializeToString()
                ).template,
                pb.CreateTaskRequest.FromString(v1.CreateTaskRequest(
                    inputs=v1_inputs(n=4, label="v2")).SerializeToString()).inputs)
            await new.delete("kit_counter", v2_meta)
    # flytekit's own encoding of its ResourceMeta, byte for byte
    assert meta == KitMeta(job_id=f"kit-3-abc-{len(TOKEN)}", n=3).encode()
    assert v2_meta == KitMeta(job_id=f"kit-4-v2-{len(TOKEN)}", n=4).encode()
    assert agents["Kit Counter Connector"] == ([("kit_counter", 0)], False)
    assert agents["Kit Chat Connector"] == ([("kit_chat", 0)], True)
    assert listed["Kit Chat Connector"] == [("kit_chat", 0)]
    assert (running.phase, running.state, running.message) == (
        TaskExecution.RUNNING, v1.RUNNING, "counting")
    assert [(link.name, link.uri) for link in running.log_links] == [
        ("Kit", f"https://kit.example/kit-3-abc-{len(TOKEN)}")]
    assert running.custom_info["polls"] == 1
    assert (done.phase, done.state) == (TaskExecution.SUCCEEDED, v1.SUCCEEDED)
    assert primitives(done.outputs) == {"total": 6, "label": f"KIT-3-ABC-{len(TOKEN)}"}
    assert [r.phase for r in via_v2] == [TaskExecution.RUNNING, TaskExecution.SUCCEEDED]
    assert {n.name for n in via_v2[1].outputs.literals} == {"total", "label"}
    assert logs[0].body.structured_lines[0].message == "counted to 3"
    assert metrics.results[0].metric == "count"
    # flytekit's own logger reaches the daemon's handlers (format, masking)
    assert any(r.name == "flytekit" and "polled 2 times" in r.getMessage()
               for r in caplog.records)


@contextlib.contextmanager
def fake_chat_api() -> Iterator[tuple[str, list[str]]]:
    """A chat completion endpoint on 127.0.0.1: answers `{"text": ...}`, or an error for
    the prompt "fail"; records the Authorization headers it got."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            answer = ({"error": "bad prompt"} if body["prompt"] == "fail"
                      else {"text": body["prompt"][::-1]})
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/chat", seen
    finally:
        server.shutdown()
        server.server_close()


async def test_a_sync_flytekit_connector_answers_execute_task_sync_and_v2(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with fake_chat_api() as (url, seen):
        template = v1_template("kit_chat", custom={"url": url}, inputs={"prompt": "str"},
                               outputs={"o0": "str"})
        async with serve_in_background(modules=[KIT]) as daemon:
            async with V1Stubs(daemon.address) as old, Stubs(daemon.address) as new:
                answer = await old.execute_sync(template, v1_inputs(prompt="hello"))
                failed = await old.execute_sync(template, v1_inputs(prompt="fail"))
                v2_template = pb.CreateTaskRequest.FromString(
                    v1.CreateTaskRequest(template=template).SerializeToString()).template
                inputs = pb.CreateTaskRequest.FromString(v1.CreateTaskRequest(
                    inputs=v1_inputs(prompt="two")).SerializeToString()).inputs
                meta = await new.create(v2_template, inputs)
                later = await new.get("kit_chat", meta)
                await new.delete("kit_chat", meta)
    assert (answer.phase, answer.state) == (TaskExecution.SUCCEEDED, v1.SUCCEEDED)
    assert primitives(answer.outputs) == {"o0": "olleh"}
    assert (failed.phase, failed.state) == (TaskExecution.FAILED, v1.PERMANENT_FAILURE)
    assert "the chat API refused: bad prompt" in failed.message
    assert failed.agent_error.code == "RuntimeError"
    assert failed.agent_error.kind == v1.AgentError.NON_RECOVERABLE
    assert later.phase == TaskExecution.SUCCEEDED
    assert later.outputs.literals[0].value.scalar.primitive.string_value == "owt"
    assert seen == [f"Bearer {CHAT_KEY}"] * 3
    assert CHAT_KEY not in caplog.text and TOKEN not in caplog.text


async def test_a_blocking_flytekit_connector_does_not_stall_either_api() -> None:
    template = v1_template("kit_sleepy", inputs={"seconds": "float"})
    async with serve_in_background(modules=[KIT], client_timeout=60) as daemon:
        async with V1Stubs(daemon.address) as old, Stubs(daemon.address) as new:
            meta = await old.create(template, v1_inputs(seconds=1.0))
            calls = [asyncio.ensure_future(old.get("kit_sleepy", meta)) for _ in range(32)]
            await asyncio.sleep(0.3)
            latencies: dict[str, list[float]] = {"ListConnectors": [], "ListAgents": []}
            for _ in range(10):
                for name, call in (("ListConnectors", new.list), ("ListAgents", old.agents)):
                    started = time.perf_counter()
                    await call()
                    latencies[name].append(time.perf_counter() - started)
            blocked = sum(not c.done() for c in calls)
            finished, _ = await asyncio.wait(calls, timeout=20,
                                             return_when=asyncio.FIRST_COMPLETED)
            assert finished, "no GetTask finished within 20 s"
            done = finished.pop().result()
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
    worst = {name: max(values) * 1000 for name, values in latencies.items()}
    print(f"during {blocked} blocked GetTasks: worst ListConnectors "  # noqa: T201
          f"{worst['ListConnectors']:.1f} ms, worst ListAgents {worst['ListAgents']:.1f} ms")
    assert blocked >= 28 and done.phase == TaskExecution.SUCCEEDED
    assert all(ms < 50 for ms in worst.values()), worst


async def test_a_bad_flytekit_meta_is_invalid_argument_on_both_apis() -> None:
    async with serve_in_background(modules=[KIT]) as daemon:
        async with V1Stubs(daemon.address) as old, Stubs(daemon.address) as new:
            errors = []
            for call in (old.get("kit_counter", b"not json"), new.get("kit_counter", b"{}")):
                with pytest.raises(grpc.aio.AioRpcError) as bad:
                    await call
                errors.append(bad.value)
    assert [e.code() for e in errors] == [grpc.StatusCode.INVALID_ARGUMENT] * 2
    assert "not a valid KitMeta" in (errors[0].details() or "")


async def test_flyte_connector_test_runs_a_flytekit_connector_in_process() -> None:
    from connector_cli.testing import make_template, run_task

    registry = ConnectorRegistry()
    assert not discover(registry, modules=[KIT], plugins=()).failed
    template = make_template("kit_counter", inputs={"n": int, "label": str},
                             outputs={"total": int, "label": str})
    result = await run_task(registry, template, {"n": 4, "label": "run"}, poll_interval=0.01)
    assert result.phases == ["RUNNING", "SUCCEEDED"]
    totals = {n.name: n.value.scalar.primitive for n in result.outputs.literals}
    assert totals["total"].integer == 8


async def test_flytekits_log_lines_come_out_in_the_daemons_format(tmp_path: Path) -> None:
    """flytekit installs handlers of its own (rich text) at import; served by us, its
    records go through the daemon's handlers: with --log-format json every line is JSON."""
    from tests.helpers.flyte1_support import start_ours_v1

    daemon = start_ours_v1(tmp_path, "--plugins", "none", "--modules", "flytekit_style",
                           "--log-format", "json", _FSEC_KIT_TOKEN=TOKEN)
    try:
        async with V1Stubs(daemon.address) as old:
            meta = await old.create(counter_template(), v1_inputs(n=1, label="json"))
            await old.get("kit_counter", meta)
    finally:
        log = daemon.stop()
    records = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert any(r["logger"] == "flytekit" and "polled 1 times" in r["message"] for r in records)
    assert TOKEN not in log
