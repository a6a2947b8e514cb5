"""The examples users copy: every plugin example template runs with the inputs file beside
it, the docs' daemon example prints plainly, and the daemon's ready line reads well."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from connector_cli.literals import json_to_inputs
from connector_cli.run.task_files import load_task
from tests.conftest import REPO, cli_env


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connector_cli", *args], capture_output=True,
                          text=True, timeout=120, env=cli_env(**env), cwd=REPO)


def test_the_daemon_says_1_task_type() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector_cli", "serve", "--host", "127.0.0.1", "--port", "0",
         "--metrics-port", "0", "--plugins", "shell", "--workers", "1"],
        stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=REPO)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "listening on" in line:
            break
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert re.search(r"listening on 127\.0\.0\.1:\d+ \(plaintext, 1 task type, 1 worker\)",
                     "".join(seen)), seen


def test_the_daemon_check_example_prints_the_phase_name() -> None:
    result = subprocess.run([sys.executable, "docs/examples/daemon_check.py"],
                            capture_output=True, text=True, timeout=60, cwd=REPO,
                            env=cli_env(PYTHONPATH=f"{REPO / 'docs' / 'examples'}:{REPO}"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "phase SUCCEEDED - greeted"


EXAMPLE_TEMPLATES = sorted(REPO.glob("plugins/*/examples/*.yaml"))


@pytest.mark.parametrize("template", EXAMPLE_TEMPLATES, ids=lambda p: p.name)
def test_each_example_template_has_its_own_inputs(template: Path) -> None:
    inputs = template.with_name(template.stem + ".inputs.json")
    relative = inputs.relative_to(REPO)
    assert f"--inputs {relative}" in " ".join(template.read_text().replace("\\\n#", "").split())
    loaded = load_task(template)
    values = json.loads(inputs.read_text())
    converted = json_to_inputs(values, loaded.template.interface, loaded.defaults)
    assert {n.name for n in converted.literals} == set(values)
    assert not list(template.parent.glob("inputs.json"))


# Examples that need a service run in their plugin's tests against a real one: postgres
# (plugins/sql/tests) and slurm (plugins/slurm/tests/test_slurm_cli.py, a throwaway cluster).
NEEDS_A_SERVICE = {"plugins/sql/examples/postgres.yaml", "plugins/slurm/examples/word_count.yaml"}


@pytest.mark.parametrize("template", [t for t in EXAMPLE_TEMPLATES
                                      if str(t.relative_to(REPO)) not in NEEDS_A_SERVICE],
                         ids=lambda p: p.name)
def test_each_runnable_example_runs_with_its_inputs(template: Path) -> None:
    relative = template.relative_to(REPO)
    inputs = relative.with_name(relative.stem + ".inputs.json")
    result = run_cli("test", str(relative), "--inputs", str(inputs), "--progress", "plain")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "phase SUCCEEDED" in result.stdout


def test_the_postgres_example_says_how_to_start_a_throwaway_server() -> None:
    header = (REPO / "plugins/sql/examples/postgres.yaml").read_text().split("\ntype:", 1)[0]
    assert "docker run --rm -d --name fc-pg -p 127.0.0.1:5432:5432" in header
    assert "-e POSTGRES_USER=app -e POSTGRES_PASSWORD=secret postgres:16" in header
    assert "--secret app-db-password=secret" in header
