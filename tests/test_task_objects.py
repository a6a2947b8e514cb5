"""`flyte-connector test MODULE:ATTR`: task objects instead of task files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector_cli.cli import cli
from connector_cli.errors import UsageError
from connector_cli.run.task_objects import load_any, looks_like_object
from tests.conftest import CONNECTORS, JOB_TASK

TASKS = '''
from connector_cli.testing import make_template

job = make_template("job", inputs={"outcome": str, "seconds": float, "record": str},
                    outputs={"answer": int, "job_id": str})
not_a_task = 42
'''


@pytest.fixture
def tasks_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "my_tasks.py").write_text(TASKS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(CONNECTORS))
    return tmp_path


def test_a_file_wins_over_a_name_that_looks_like_an_object(tmp_path: Path) -> None:
    assert looks_like_object("pkg.mod:task") and not looks_like_object(str(JOB_TASK))
    assert load_any(JOB_TASK).form.startswith("YAML")


def test_a_template_object_runs_like_its_file(tasks_module: Path) -> None:
    result = CliRunner().invoke(cli, ["test", "my_tasks:job", "--plugins", "none", "-m", "run_jobs",
                                      "-i", "outcome=succeed", "-i", "seconds=0", "-i", "record=",
                                      "--poll-interval", "0.05", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["task"] == {"file": "my_tasks:job", "form": "TaskTemplate object", "type": "job", "version": 0}
    assert doc["outputs"]["answer"] == 42


@pytest.mark.parametrize(("spec", "message"), [
    ("no_such_module:job", ("no module named 'no_such_module' for task 'no_such_module:job': run from "
                            "the directory that holds it, or install its package")),
    ("my_tasks:missing", "module 'my_tasks' has no 'missing' (task 'my_tasks:missing')"),
    ("my_tasks:not_a_task", "my_tasks:not_a_task is an int, not a task: give a Flyte SDK or flytekit task object"),
])
def test_what_is_not_a_task_is_one_line_and_exit_2(tasks_module: Path, spec: str, message: str) -> None:
    result = CliRunner().invoke(cli, ["test", spec, "--plugins", "none"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {message}") and result.stderr.count("\n") == 1
    with pytest.raises(UsageError):
        load_any(spec)
