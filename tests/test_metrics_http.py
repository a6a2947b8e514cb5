"""The /metrics endpoint on the daemon's event loop: prometheus_client only at first scrape."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from connector_cli.daemon.metrics import Metrics
from connector_cli.daemon.metrics_http import MetricsEndpoint
from tests.conftest import REPO, cli_env


def fetch(url: str, accept: str = "") -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_metrics_text_openmetrics_and_unknown_paths() -> None:
    async def scenario() -> list[tuple[int, str, str]]:
        metrics = Metrics()
        metrics.plugins(3, [])
        endpoint = MetricsEndpoint(metrics)
        port = await endpoint.start("127.0.0.1", 0)
        base = f"http://127.0.0.1:{port}"
        try:
            return [
                await asyncio.to_thread(fetch, base + "/metrics"),
                await asyncio.to_thread(fetch, base + "/metrics",
                                        "application/openmetrics-text; version=1.0.0"),
                await asyncio.to_thread(fetch, base + "/elsewhere"),
            ]
        finally:
            await endpoint.close()

    plain, openmetrics, missing = asyncio.run(scenario())
    assert plain[0] == 200 and plain[1].startswith("text/plain")
    assert "flyte_connector_plugins_loaded 3.0" in plain[2]
    assert openmetrics[0] == 200 and openmetrics[1].startswith("application/openmetrics-text")
    assert openmetrics[2].rstrip().endswith("# EOF")
    assert missing[0] == 404


def test_a_taken_metrics_port_is_an_os_error() -> None:
    async def scenario() -> None:
        first = MetricsEndpoint(Metrics())
        port = await first.start("127.0.0.1", 0)
        try:
            with pytest.raises(OSError):
                await MetricsEndpoint(Metrics()).start("127.0.0.1", port)
        finally:
            await first.close()

    asyncio.run(scenario())


SCRIPT = """
import asyncio, sys, urllib.request
from connector_cli.testing import serve_in_background

async def main():
    async with serve_in_background(metrics_port=0) as daemon:
        await daemon.client.list_connectors()
        before = "prometheus_client" in sys.modules
        url = daemon.metrics_url
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
        print(before, "prometheus_client" in sys.modules, b"flyte_connector_requests" in text)

asyncio.run(main())
"""


def test_prometheus_client_is_imported_by_the_first_scrape_not_at_start() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            cwd=REPO, env=cli_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "True"]
