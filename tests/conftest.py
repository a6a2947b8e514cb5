"""Shared fixtures and paths: the registry fixture, real installed plugin distributions, and
the fixture connectors. Test modules import shared things from here or tests/helpers/,
never from each other."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from connector_cli.sdk.registry import ConnectorRegistry

HERE = Path(__file__).parent
REPO = HERE.parent
FIXTURE_DISTS = HERE / "fixtures" / "dists"
CONNECTORS = HERE / "fixtures" / "connectors"
JOB_TASK = CONNECTORS / "run_job_task.yaml"


@pytest.fixture
def registry(connector_registry: ConnectorRegistry) -> ConnectorRegistry:
    """A fresh, empty registry: the test kit's `connector_registry`, under a short name."""
    return connector_registry


@pytest.fixture(scope="session")
def installed_dists(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture plugin distributions, built and installed by pip into a directory.

    Nothing is patched: importlib-metadata finds them as it finds any installed package
    once the directory is on sys.path (tests use `plugin_path` or PYTHONPATH for that).
    """
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    sources = []
    for dist in sorted(FIXTURE_DISTS.iterdir()):
        copy = build / dist.name
        subprocess.run(["cp", "-r", str(dist), str(copy)], check=True)
        sources.append(str(copy))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--disable-pip-version-check", "--target", str(target),
         *sources],
        check=True,
        timeout=300,
    )
    return target


@pytest.fixture
def plugin_path(installed_dists: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the installed fixture distributions on sys.path for this test only."""
    monkeypatch.syspath_prepend(str(installed_dists))
    return installed_dists


def cli_env(**extra: str) -> dict[str, str]:
    """A subprocess environment without the caller's FLYTE_CONNECTOR_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYTE_CONNECTOR_")}
    env.update(extra)
    return env


def run_python(code: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """`python -c code` in a fresh interpreter from the repository root (what it imports
    starts from nothing), with `cli_env(**extra)`."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=cli_env(**extra), cwd=REPO)
