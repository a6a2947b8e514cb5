"""The Helm chart deploy/helm/flyte-connector rendered by the real `helm` (`make helm`
builds it into .venv/bin): lint and template results, as Kubernetes objects by kind."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

CHART = REPO / "deploy" / "helm" / "flyte-connector"
VALUES = REPO / "tests" / "fixtures" / "helm"
NAMESPACE = "flyte"


def helm() -> str:
    """The helm binary next to the test interpreter, or on PATH; skips without one."""
    beside = Path(sys.executable).parent / "helm"
    found = str(beside) if os.access(beside, os.X_OK) else shutil.which("helm")
    if found is None:
        pytest.skip("helm is not installed (make helm builds it with Go)")
    return found


def run_helm(*args: str) -> str:
    done = subprocess.run([helm(), *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO)
    assert done.returncode == 0, f"helm {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


@functools.lru_cache(maxsize=None)
def render(values: str = "", *sets: str) -> dict[str, list[dict[str, Any]]]:
    """`helm template` of the chart with tests/fixtures/helm/<values>.yaml (and --set
    `sets`) into the flyte namespace: every object, by kind."""
    args = ["template", "flyte-connector", str(CHART), "--namespace", NAMESPACE]
    if values:
        args += ["-f", str(VALUES / f"{values}.yaml")]
    for assignment in sets:
        args += ["--set", assignment]
    found: dict[str, list[dict[str, Any]]] = {}
    for doc in yaml.safe_load_all(run_helm(*args)):
        if doc is None:
            continue
        assert isinstance(doc, dict) and doc.get("kind"), f"not an object: {doc!r}"
        found.setdefault(doc["kind"], []).append(doc)
    return found


def values_files() -> list[str]:
    return sorted(p.stem for p in VALUES.glob("*.yaml"))
