"""`make dist` builds installable wheels: the core and each bundled plugin install into a
fresh virtual environment (dependencies from the package index, as a user's `pip install`
gets them) and `flyte-connector list` runs there, loading the plugins from the wheels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, cli_env

PLUGINS = sorted(p.parent.name for p in REPO.glob("plugins/*/pyproject.toml"))


def test_make_dist_wheels_install_into_a_fresh_venv_and_list_runs(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = subprocess.run(["make", "-s", "dist", f"DIST={dist}"], cwd=REPO, timeout=300,
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    wheels = sorted(p.name for p in dist.glob("*.whl"))
    assert [w.split("-")[0] for w in wheels] == [
        "flyte_connector", *(f"flyte_connector_{name}" for name in PLUGINS)]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = cli_env(PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         *map(str, dist.glob("*.whl"))], env=env, cwd=tmp_path, timeout=600,
        capture_output=True, text=True)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    listed = subprocess.run([str(venv / "bin" / "flyte-connector"), "list", "--json"],
                            env=env, cwd=tmp_path, timeout=120, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    sources = {c["source"]["distribution"] for c in json.loads(listed.stdout)["connectors"]}
    assert sources == {f"flyte-connector-{name}" for name in PLUGINS}
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import connector_cli, flyte_connector_shell as s; "
                            "print(connector_cli.__file__); print(s.__file__)"],
                           env=env, cwd=tmp_path, timeout=60, capture_output=True, text=True)
    assert all(line.startswith(str(venv)) for line in where.stdout.split()), where.stdout
    assert not any(str(REPO) in line for line in where.stdout.split(os.linesep))
