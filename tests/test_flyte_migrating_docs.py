"""docs/migrating-from-flyte.md: its Flyte SDK example is served unchanged, and its ported
twin answers the same, including for resource_meta bytes the Flyte SDK version wrote."""

from __future__ import annotations

import importlib

import pytest

pytest.importorskip("flyte.connectors", reason="needs the flyte extra (make test installs it)")

from connector_cli.discovery import discover
from connector_cli.sdk.registry import ConnectorRegistry
from connector_cli.testing import make_template, run_task
from tests.conftest import REPO


@pytest.fixture
def examples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "docs" / "examples"))


@pytest.mark.parametrize("module", ["flyte_sdk_connector", "ported_connector"])
async def test_both_versions_of_the_example_run_the_same(module: str, examples: None) -> None:
    registry = ConnectorRegistry()
    report = discover(registry, [module], ())
    assert not report.failed, report.failed
    sdk = getattr(registry.get_connector("report"), "sdk", "flyte-connector")
    assert sdk == ("flyte-sdk" if module == "flyte_sdk_connector" else "flyte-connector")
    template = make_template("report", inputs={"day": str}, outputs={"rows": int})
    result = await run_task(registry, template, {"day": "monday"}, poll_interval=0.01)
    assert result.phases == ["RUNNING", "SUCCEEDED"]
    [rows] = result.outputs.literals
    assert (rows.name, rows.value.scalar.primitive.integer) == ("rows", 42)
    assert [link.name for link in result.log_links] == ["Report"]


def test_the_ported_meta_reads_what_the_flyte_sdk_version_wrote(examples: None) -> None:
    flyte_version = importlib.import_module("flyte_sdk_connector")
    ported = importlib.import_module("ported_connector")
    written = flyte_version.ReportMeta(job_id="report-monday").encode()
    assert ported.ReportMeta.decode(written) == ported.ReportMeta(job_id="report-monday")
    assert ported.AsyncConnector.__module__.startswith("connector_cli.")
