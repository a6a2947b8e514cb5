"""The Grafana dashboard and the alert rules beside it (deploy/helm/flyte-connector/files)
name only series, and labels, that a real daemon's /metrics carries after the calls
they watch: successes, failures, CreateTask inputs."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from typing import Any

import pytest
import yaml
from flyteidl2.core.tasks_pb2 import TaskTemplate
from flyteidl2.task.common_pb2 import Inputs, NamedLiteral
from prometheus_client.parser import text_string_to_metric_families

from connector_cli.client import ConnectorClient
from connector_cli.config import ServerConfig
from connector_cli.daemon.server import ConnectorServer
from connector_cli.discovery import discover
from connector_cli.errors import ConnectorNotFound, UsageError
from connector_cli.literals import python_to_literal
from connector_cli.sdk.registry import ConnectorRegistry
from connector_cli.signing import MetaSigner
from tests.fixtures.connectors import daemon_connectors as dc
from tests.helpers.helm import CHART

DASHBOARD = CHART / "files" / "grafana-dashboard.json"
RULES = CHART / "files" / "alert-rules.yaml"
SERIES = re.compile(r"\b((?:flyte_connector|process|python)_[a-z_]+)\b")
SCRAPE_LABELS = {"instance", "job", "le"}  # added by Prometheus, or a histogram's own


def expressions() -> dict[str, list[str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard["panels"]}
    variables = {v["name"]: [v["query"]["query"]] for v in dashboard["templating"]["list"]
                 if v["type"] == "query"}
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    return {**panels, **variables, **{r["alert"]: [r["expr"]] for r in rules}}


@pytest.fixture(scope="module")
def scraped() -> dict[str, set[str]]:
    """Sample name -> label names, from a daemon that served the calls the panels watch."""
    async def scenario() -> str:
        registry = ConnectorRegistry()
        for cls in dc.ALL:
            registry.register(cls())
        report = discover(registry, ["tests.fixtures.no_such_plugin"], ())  # one that failed
        config = ServerConfig(host="127.0.0.1", port=0, metrics_port=0)
        server = ConnectorServer(registry, config, report, MetaSigner.ephemeral())
        await server.start()
        try:
            async with ConnectorClient(server.address) as client:
                inputs = Inputs(literals=[NamedLiteral(name="n", value=python_to_literal(7))])
                meta = await client.create(TaskTemplate(type="echo"), "s3://out", inputs)
                await client.get(("echo", 0), meta)
                with pytest.raises(UsageError):
                    await client.get(("echo", 0), b"garbage")
                with pytest.raises(ConnectorNotFound):
                    await client.get(("nope", 0), meta)
            url = f"http://127.0.0.1:{server.metrics_port}/metrics"
            return await asyncio.to_thread(
                lambda: urllib.request.urlopen(url, timeout=10).read().decode())
        finally:
            await server.stop()

    text = asyncio.run(scenario())
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return found


def used_labels(expr: str) -> set[str]:
    used = set(re.findall(r"(\w+)\s*(?:=~|!=|!~|=)\s*\"", expr))
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        used |= {g.strip() for g in group.split(",") if g.strip()}
    used |= set(re.findall(r"\{\{\s*\$labels\.(\w+)", expr))
    return used


def test_the_dashboard_and_rules_name_only_series_and_labels_on_metrics(
        scraped: dict[str, set[str]]) -> None:
    checked: set[str] = set()
    for title, exprs in expressions().items():
        for expr in exprs:
            names = set(SERIES.findall(expr))
            assert names, f"{title}: names no series"
            missing = names - set(scraped)
            assert not missing, f"{title}: {sorted(missing)} not on /metrics"
            labels = set().union(*(scraped[n] for n in names)) | SCRAPE_LABELS
            assert used_labels(expr) <= labels, (title, used_labels(expr) - labels)
            checked |= names
    assert {"flyte_connector_requests_failure_total", "process_resident_memory_bytes",
            "flyte_connector_request_latency_seconds_count",
            "flyte_connector_request_duration_seconds_bucket"} <= checked


def test_the_dashboard_uses_the_c0_series_beside_ours() -> None:
    text = DASHBOARD.read_text()
    for c0_series in ("flyte_connector_requests_success_total", "error_code",
                      "flyte_connector_request_latency_seconds_sum",
                      "flyte_connector_input_literal_bytes_sum"):
        assert c0_series in text
    assert all(p["datasource"]["uid"] == "${datasource}"
               for p in json.loads(text)["panels"])


def test_rule_annotations_name_labels_their_expressions_keep(
        scraped: dict[str, set[str]]) -> None:
    rules: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    for rule in rules:
        kept = set()
        for group in re.findall(r"\bby\s*\(([^)]*)\)", rule["expr"]):
            kept |= {g.strip() for g in group.split(",")}
        named = set(re.findall(r"\$labels\.(\w+)", json.dumps(rule.get("annotations", {}))))
        assert named <= kept, (rule["alert"], named - kept)
