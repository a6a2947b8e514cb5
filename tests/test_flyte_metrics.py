"""/metrics of the Flyte SDK's server (`c0`) and of `flyte-connector serve`, after the same
requests to the same connectors: every series `c0` exports, with its type and its label
values, is on ours too (so a `c0` dashboard keeps working), and a connector's own metric in
prometheus_client's default registry is exported as `c0` exports it."""

from __future__ import annotations

import asyncio
import re
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest

pytest.importorskip("flyte.connectors", reason="needs the flyte extra")

from prometheus_client.parser import text_string_to_metric_families

from connector_cli.testing import make_inputs, make_template
from tests.helpers.flyte_support import Process, Stubs, free_port, start_c0

SECRET = "s3cr3t-counter-key"
MODULES = ("--modules", "flyte_style", "--modules", "flyte_metered")
METRICS_LINE = re.compile(r"metrics on http://[^ ]*:(\d+)/metrics")


def start_ours_c0_style(tmp: Path) -> tuple[Process, int]:
    """Ours with c0's command line, `--prometheus_port 0` included (an ephemeral port)."""
    port = free_port()
    argv = [sys.executable, "-m", "connector_cli", "serve", "--host", "127.0.0.1",
            "--port", str(port), "--prometheus_port", "0", "--plugins", "none", *MODULES]
    daemon = Process(argv, tmp / "ours.log").ready(f"127.0.0.1:{port}")
    deadline = time.monotonic() + 10
    while not (found := METRICS_LINE.search(daemon.text())) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert found, daemon.text()
    return daemon, int(found.group(1))


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[tuple[Process, int], tuple[Process, int]]]:
    tmp = tmp_path_factory.mktemp("metrics")
    c0_metrics = free_port()
    started: list[Process] = []
    try:
        started.append(start_c0(tmp, *MODULES, metrics_port=c0_metrics))
        ours, ours_metrics = start_ours_c0_style(tmp)
        started.append(ours)
        yield (started[0], c0_metrics), (ours, ours_metrics)
    finally:
        for daemon in started:
            assert SECRET not in daemon.stop()


async def same_requests(stubs: Stubs) -> None:
    """Successes, an unknown task type (404 on c0), failing calls (500 on c0), inputs."""
    template = make_template("flyte_counter", inputs={"n": int, "label": str})
    inputs = make_inputs(template, {"n": 3, "label": "m"})
    meta = await stubs.create(template, inputs, secrets={"api_key": SECRET})
    await stubs.get("flyte_counter", meta)
    await stubs.delete("flyte_counter", meta)
    with pytest.raises(grpc.aio.AioRpcError):
        await stubs.create(template, inputs, secrets={"api_key": "wrong"})
    with pytest.raises(grpc.aio.AioRpcError):
        await stubs.get("flyte_counter", b"not json")
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stubs.get("no_such_type", meta)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    metered = make_template("flyte_metered")
    await stubs.get("flyte_metered", await stubs.create(metered))


def scrape(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


async def test_every_c0_series_and_label_value_is_on_ours(daemons: Any) -> None:
    (c0, c0_port), (ours, ours_port) = daemons
    for daemon in (c0, ours):
        async with Stubs(daemon.address) as stubs:
            await same_requests(stubs)
    theirs, mine = scrape(c0_port), scrape(ours_port)
    assert {"process_resident_memory_bytes", "python_info", "team_metered_jobs"} <= set(theirs)
    missing = []
    for name, family in theirs.items():
        if name not in mine or mine[name].type != family.type:
            missing.append(f"{name} ({family.type})")
            continue
        for sample in family.samples:
            if not any(s.name == sample.name and s.labels.items() >= sample.labels.items()
                       for s in mine[name].samples):
                missing.append(f"{sample.name}{sample.labels}")
    assert not missing, missing
    failures = {(s.labels["error_code"], s.labels["grpc_code"], s.labels["operation"])
                for s in mine["flyte_connector_requests_failure"].samples
                if s.name.endswith("_total")}
    assert {("404", "NOT_FOUND", "get"), ("500", "INTERNAL", "create")} <= failures
    team = [s for s in mine["team_metered_jobs"].samples if s.name == "team_metered_jobs_total"]
    assert [(s.labels, s.value) for s in team] == [({"kind": "batch"}, 1.0)]
    assert mine["flyte_connector_request_duration_seconds"].type == "histogram"


async def test_a_plugin_named_by_an_entry_point_and_by_modules_counts_once() -> None:
    pytest.importorskip("flyteplugins.databricks", reason="needs the flyte-test extra")
    from connector_cli.testing import serve_in_background

    async with serve_in_background(plugins=["databricks"],
                                   modules=["flyteplugins.databricks.connector"],
                                   metrics_port=0) as daemon:
        assert len(daemon.report.loaded) == 2 and daemon.report.modules_loaded == 1
        url = daemon.metrics_url
        assert url
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
    assert b"\nflyte_connector_plugins_loaded 1.0\n" in text
