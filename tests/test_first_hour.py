"""A new user's first hour, followed literally in a fresh virtual environment (issue 14).

One module-scoped environment is made with `python -m venv` and the install commands of
docs/getting-started.md; then `make serve` (with the port variables the README documents),
the README's commands after `. .venv/bin/activate`, and `flyte-connector init`'s printed
"Next:" steps run exactly as written, with and without the environment on PATH.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import REPO, cli_env
from tests.helpers.daemon_process import read_address

README = (REPO / "README.md").read_text()
GETTING_STARTED = (REPO / "docs" / "getting-started.md").read_text()
INSTALL_TIMEOUT = 600
pytestmark = pytest.mark.timeout(900)


def clean_path() -> str:
    """PATH without any directory holding a flyte-connector (or this test's interpreter)."""
    keep = [d for d in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
            if d and not (Path(d) / "flyte-connector").exists()
            and Path(d).absolute() != Path(sys.executable).parent.absolute()]
    return os.pathsep.join(keep)


def bash(script: str, cwd: Path, timeout: float = INSTALL_TIMEOUT,
         **env: str) -> subprocess.CompletedProcess[str]:
    """Run `script` as a user would type it, stopping at the first failing command."""
    return subprocess.run(["bash", "-ec", script], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=cli_env(PATH=clean_path(), **env))


def sh_blocks(markdown: str) -> list[str]:
    """The ```sh blocks of a page, line continuations kept."""
    return re.findall(r"```sh\n(.*?)```", markdown, re.S)


def section(markdown: str, title: str) -> str:
    """The text of the `## title` section."""
    return markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the getting-started install commands run in it literally."""
    root = tmp_path_factory.mktemp("newcomer") / ".venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120)
    install = "\n".join(sh_blocks(section(GETTING_STARTED, "Install"))[1:])
    assert "pip install -e ." in install and "pip install -e plugins/shell" in install
    result = bash(f". {root}/bin/activate\n{install}\npip install -e plugins/sql", cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    return root


@pytest.fixture(scope="module")
def make_serve(venv: Path) -> Iterator[str]:
    """`make serve` as the README shows it, ports from its environment variables."""
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "serve", f"VENV={venv}",
         "SERVE_ARGS=--host 127.0.0.1"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=cli_env(PATH=clean_path(), FLYTE_CONNECTOR_PORT="0",
                    FLYTE_CONNECTOR_METRICS_PORT="0"),
    )
    assert proc.stderr is not None
    seen: list[str] = []
    address = read_address(proc.stderr, INSTALL_TIMEOUT, seen)
    if address is None:
        proc.kill()
        pytest.fail("make serve did not start:\n" + "".join(seen))
    yield address
    for child in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
        os.kill(int(child), signal.SIGINT)  # the daemon, as Ctrl-C would reach it
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(seen) + rest


def test_the_readme_commands_run_after_activating(venv: Path, make_serve: str) -> None:
    assert "FLYTE_CONNECTOR_METRICS_PORT=9091 make serve" in README
    assert "make serve SERVE_ARGS=" in README
    blocks = [b for b in sh_blocks(README) if ". .venv/bin/activate" in b]
    assert len(blocks) == 2
    for block in blocks:
        script = block.replace(". .venv/bin/activate", f". {venv}/bin/activate")
        result = bash(script.replace("localhost:8000", make_serve), cwd=REPO, timeout=180)
        assert result.returncode == 0, block + result.stdout + result.stderr
        assert re.search(r"succeeded in [\d.]+s after \d+ poll\(s\), phase SUCCEEDED",
                         result.stdout), result.stdout


def next_steps(output: str) -> list[str]:
    """The commands `init` printed under "Next:"."""
    lines = output.split("Next:\n", 1)[1].splitlines()
    return [line[2:] for line in lines if line.startswith("  ")]


def test_init_steps_work_with_the_environment_activated(venv: Path, tmp_path: Path) -> None:
    command = re.search(r"`(flyte-connector init [\w-]+)`", GETTING_STARTED)
    assert command is not None
    made = bash(f". {venv}/bin/activate\n{command.group(1)}", cwd=tmp_path, timeout=60)
    assert made.returncode == 0, made.stderr
    steps = next_steps(made.stdout)
    assert steps == [
        f"cd {tmp_path / 'flyte-connector-my-connector'}",
        "python -m pip install -r requirements-local.txt -e '.[test]'",
        "flyte-connector list",
        "flyte-connector test examples/task.yaml --inputs examples/task.inputs.json",
        "pytest",
    ]
    done = bash(f". {venv}/bin/activate\n" + "\n".join(steps), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MyConnector" in done.stdout and re.search(r"\d+ passed", done.stdout), done.stdout


def test_init_steps_work_without_the_environment_on_path(venv: Path, tmp_path: Path) -> None:
    made = bash(f"{venv}/bin/flyte-connector init weather", cwd=tmp_path, timeout=60)
    assert made.returncode == 0, made.stderr
    steps = next_steps(made.stdout)
    assert steps[1] == f"{venv}/bin/python -m pip install -r requirements-local.txt -e '.[test]'"
    assert steps[2] == f"{venv}/bin/flyte-connector list"
    done = bash("\n".join(steps), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Weather" in done.stdout and "phase SUCCEEDED" in done.stdout
    assert re.search(r"\d+ passed", done.stdout), done.stdout
