"""The README's quick-start commands run as written (against a real daemon where they say so)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env
from tests.helpers.daemon_process import read_address

README = (REPO / "README.md").read_text()
BIN = Path(sys.executable).parent


def readme_commands() -> list[list[str]]:
    """Every `flyte-connector ...` command in the README's sh blocks (after activation)."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if command.startswith("flyte-connector "):
                commands.append(shlex.split(command.split("#")[0]))
    return commands


def test_readme_has_the_two_quick_start_commands_and_the_make_targets_exist() -> None:
    assert "make serve" in README and "make test" in README
    makefile = (REPO / "Makefile").read_text()
    for target in ("serve", "test", "bench", "docs"):
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert len(readme_commands()) >= 3


@pytest.fixture(scope="module")
def daemon_address() -> str:
    """`flyte-connector serve` with the bundled plugins, as `make serve` runs it, on port 0."""
    proc = subprocess.Popen(
        [str(BIN / "flyte-connector"), "serve", "--host", "127.0.0.1", "--port", "0",
         "--metrics-port", "0"],
        stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=REPO,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    address = read_address(proc.stderr, 30, seen)
    if address is None:
        proc.kill()
        pytest.fail("daemon did not start:\n" + "".join(seen))
    yield address
    proc.terminate()
    proc.communicate(timeout=30)
    assert proc.returncode == 0


@pytest.mark.parametrize("argv", readme_commands(), ids=lambda argv: " ".join(argv[1:3]))
def test_readme_command_runs(argv: list[str], daemon_address: str, tmp_path: Path) -> None:
    argv = [str(BIN / "flyte-connector")] + [
        daemon_address if arg == "localhost:8000" else arg for arg in argv[1:]
    ]
    if argv[1] == "test":
        argv += ["--output-prefix", str(tmp_path), "--timeout", "60"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=90,
                            env=cli_env(), cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    if argv[1] == "list":
        assert "shell v0" in result.stdout and "sql v0" in result.stdout
    if argv[1] == "test":
        assert "SUCCEEDED" in result.stdout
