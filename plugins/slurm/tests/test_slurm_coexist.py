"""This connector (`slurm` v1, entry point `slurm-batch`) and the Flyte SDK's
flyteplugins-slurm (`slurm` v0, entry point `slurm`) load, list and serve side by side."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from flyte_connector_slurm.connector import SlurmConnector

from connector_cli.discovery import discover
from connector_cli.sdk.registry import ConnectorRegistry
from connector_cli.testing import serve_in_background

REPO = Path(__file__).resolve().parents[3]
OURS = ("Slurm", "slurm-batch", "flyte-connector-slurm", [("slurm", 1)])
FLYTE_SDK = ("Slurm Connector", "slurm", "flyteplugins-slurm", [("slurm", 0), ("slurm_script", 0)])


def listed(*args: str) -> list[tuple[str, str, str, list[tuple[str, int]]]]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    done = subprocess.run([sys.executable, "-m", "connector_cli", "list", "--json", *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["failed"] == []
    return [(row["name"], row["source"]["name"], row["source"]["distribution"],
             [(t["name"], t["version"]) for t in row["task_types"]])
            for row in data["connectors"] if "slurm" in row["source"]["distribution"]]


def test_a_default_list_shows_both_slurm_connectors() -> None:
    assert sorted(listed()) == sorted([OURS, FLYTE_SDK])


def test_plugin_names_select_exactly_one_of_them() -> None:
    assert listed("--plugins", "slurm") == [FLYTE_SDK]
    assert listed("--plugins", "slurm-batch") == [OURS]
    assert listed("--plugins", "flyte-connector-slurm") == [OURS]


def test_the_task_type_version_routes_to_the_right_connector() -> None:
    registry = ConnectorRegistry()
    assert not discover(registry, (), ["slurm", "slurm-batch"]).failed
    assert isinstance(registry.get_connector("slurm", 1), SlurmConnector)
    assert registry.get_connector("slurm", 0).name == "Slurm Connector"


async def test_one_daemon_serves_both() -> None:
    async with serve_in_background(plugins=["slurm", "slurm-batch"], metrics_port=0) as daemon:
        served = {c.name: [(t.name, t.version) for t in c.supported_task_categories]
                  for c in await daemon.client.list_connectors()}
    assert served == {OURS[0]: OURS[3], FLYTE_SDK[0]: FLYTE_SDK[3]}
