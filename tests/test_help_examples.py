"""`--help` ends with real examples; summaries are whole sentences (issue 14, item 4)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from connector_cli.cli import cli
from connector_cli.cli.examples import EXAMPLES, SUMMARIES
from tests.conftest import REPO, cli_env

COMMANDS = ["", *sorted(SUMMARIES)]


def help_text(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "connector_cli", *args, "--help"],
                            capture_output=True, text=True, timeout=60,
                            env=cli_env(COLUMNS="80"), cwd=REPO)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("name", COMMANDS)
def test_help_ends_with_two_or_three_examples(name: str) -> None:
    text = help_text(*([name] if name else []))
    head, _, tail = text.rpartition("\n  Examples:\n\n")
    assert head, text
    shown = [line.strip() for line in tail.splitlines()]
    assert shown == list(EXAMPLES[name]) and 2 <= len(shown) <= 3
    assert all(len(line) <= 80 for line in text.splitlines())


@pytest.mark.parametrize("example", [e for name in COMMANDS for e in EXAMPLES[name]])
def test_every_example_parses_with_the_real_options(example: str) -> None:
    words = shlex.split(example)
    start = words.index("flyte-connector")
    assert all(re.fullmatch(r"FLYTE_CONNECTOR_\w+=\S+", w) for w in words[:start]), example
    argv = words[start:]
    command = cli.get_command(click.Context(cli), argv[1])
    assert command is not None, example
    command.make_context(argv[1], argv[2:])  # raises click.UsageError on a wrong option


def test_the_examples_that_need_no_daemon_run(tmp_path: Path) -> None:
    """init, then list, template and test from inside the new package, as written."""
    def run(example: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "connector_cli", *shlex.split(example)[1:]]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd,
                              env=cli_env(PYTHONPATH=os.pathsep.join([str(cwd), str(REPO)]),
                                          **env))

    made = run(EXAMPLES["init"][0], tmp_path)
    assert made.returncode == 0, made.stderr
    package = tmp_path / "flyte-connector-weather"
    for example in (EXAMPLES["list"][0], EXAMPLES["template"][0]):
        result = run(example, package)
        assert result.returncode == 0, example + result.stderr
    # The package is not installed here: load it with -m, as an author would before pip.
    module = "flyte_connector_weather.connector:WeatherConnector"
    result = run(f"{EXAMPLES['test'][0]} --plugins none -m {module}", package)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "phase SUCCEEDED" in result.stdout


def test_top_level_summaries_are_whole_sentences() -> None:
    text = help_text()
    listed = text.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    rows = dict(line.split(None, 1) for line in listed.splitlines())
    assert rows == SUMMARIES
    assert all(s[0].isupper() and s.endswith(".") and "..." not in s for s in rows.values())


def test_init_task_type_shows_its_real_default(tmp_path: Path) -> None:
    text = " ".join(help_text("init").split())
    assert "default: (NAME as a Python name, e.g. my_service for my-service)" in text
    result = subprocess.run([sys.executable, "-m", "connector_cli", "init", "my-service"],
                            capture_output=True, text=True, timeout=60, env=cli_env(),
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        "Created flyte-connector-my-service in flyte-connector-my-service/ "
        "(connector MyService, task type 'my_service'):")


def test_template_task_type_version_and_its_old_spelling(tmp_path: Path) -> None:
    text = " ".join(help_text("template").split())
    assert "--task-type-version INTEGER RANGE" in text
    assert "FLYTE_CONNECTOR_TASK_TYPE_VERSION" in text and "--version" not in text
    new = subprocess.run([sys.executable, "-m", "connector_cli", "template", "--task-type", "x"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env=cli_env(FLYTE_CONNECTOR_TASK_TYPE_VERSION="2"))
    assert new.returncode == 0 and "taskTypeVersion: 2" in new.stdout, new.stderr
    old = subprocess.run([sys.executable, "-m", "connector_cli", "template", "--task-type", "x",
                          "--version", "3"], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path, env=cli_env())
    assert old.returncode == 0 and "taskTypeVersion: 3" in old.stdout
    assert old.stderr == "Warning: --version is deprecated; use --task-type-version\n"
