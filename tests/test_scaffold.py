"""`flyte-connector init` and `template`: what they write works as is."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from flyteidl2.core.tasks_pb2 import TaskTemplate
from google.protobuf.json_format import ParseDict

from connector_cli.cli import cli
from connector_cli.run.task_files import load_task
from connector_cli.testing import make_template
from tests.conftest import REPO, cli_env

FLYTE_CONNECTOR = str(Path(sys.executable).with_name("flyte-connector"))
FIXTURES = REPO / "tests" / "fixtures" / "connectors"


def run(*args: str, cwd: Path, pythonpath: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=cli_env(PYTHONPATH=pythonpath))


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`init` a package, then pip-install it into a directory (as a user would)."""
    work = tmp_path_factory.mktemp("init")
    result = CliRunner().invoke(cli, ["init", "Acme Jobs", "--dir", str(work / "acme"),
                                      "--task-type", "acme-job"])
    assert result.exit_code == 0, result.output
    site = work / "site"
    shutil.copytree(work / "acme", work / "build")  # pip leaves build files in the source
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--disable-pip-version-check", "--target", str(site),
                    str(work / "build")], check=True, timeout=300, capture_output=True)
    return work / "acme", site


def test_init_writes_a_named_package(package: tuple[Path, Path]) -> None:
    root, _ = package
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == ["README.md", "examples/task.inputs.json", "examples/task.yaml",
                     "examples/workflow.py", "examples/workflow_flytekit.py",
                     "flyte_connector_acme_jobs/__init__.py", "flyte_connector_acme_jobs/connector.py",
                     "flyte_connector_acme_jobs/task.py", "flyte_connector_acme_jobs/task_flytekit.py",
                     "pyproject.toml", "requirements-local.txt", "tests/test_connector.py",
                     "tests/test_task.py", "tests/test_task_flytekit.py"]
    pyproject = (root / "pyproject.toml").read_text()
    assert 'name = "flyte-connector-acme-jobs"' in pyproject
    assert 'acme_jobs = "flyte_connector_acme_jobs.connector:AcmeJobsConnector"' in pyproject
    assert 'task_type_name = "acme-job"' in (root / "flyte_connector_acme_jobs/connector.py").read_text()
    # By name, so it installs where flyte-connector is (an image); the local source, which
    # no index has, is installed by requirements-local.txt.
    assert 'dependencies = ["flyte-connector>=' in pyproject and 'flyte = ["flyte-connector[flyte]>=' in pyproject
    assert 'flytekit = ["flyte-connector[flytekit]>=' in pyproject
    assert (root / "requirements-local.txt").read_text().splitlines()[-1] == f"-e {REPO.resolve()}"
    assert load_task(root / "examples/task.yaml").template.type == "acme-job"


def test_the_installed_package_is_listed(package: tuple[Path, Path]) -> None:
    root, site = package
    listed = run(FLYTE_CONNECTOR, "list", "--json", cwd=root.parent, pythonpath=str(site))
    assert listed.returncode == 0, listed.stderr
    rows = {c["name"]: c for c in json.loads(listed.stdout)["connectors"]}
    assert rows["AcmeJobs"]["task_types"] == [{"name": "acme-job", "version": 0}]
    assert rows["AcmeJobs"]["source"]["distribution"] == "flyte-connector-acme-jobs"


def test_its_own_tests_pass(package: tuple[Path, Path]) -> None:
    root, site = package
    tested = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=root,
                 pythonpath=str(site))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # The connector's 3, the Flyte 2 task's 2 (through the Flyte SDK) and the flytekit
    # task's 2 (through flytekit's local execution).
    assert "7 passed" in tested.stdout


def test_flyte_connector_test_runs_its_example(package: tuple[Path, Path]) -> None:
    root, site = package
    done = run(FLYTE_CONNECTOR, "test", "examples/task.yaml", "--inputs", "examples/task.inputs.json",
               "--poll-interval", "0.2", "--json", cwd=root, pythonpath=str(site))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded"
    assert result["outputs"] == {"echo": "> hello from acme-job", "length": 21}


def test_flyte_connector_test_runs_the_task_object_users_call(package: tuple[Path, Path]) -> None:
    root, site = package
    done = run(FLYTE_CONNECTOR, "test", "examples.workflow:echo", "-i", "message=hi", "-i", "seconds=0",
               "--poll-interval", "0.2", "--json", cwd=root, pythonpath=str(site))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["task"] == {"file": "examples.workflow:echo", "form": "Flyte SDK task",
                              "type": "acme-job", "version": 0}
    assert result["outputs"] == {"echo": "> hi", "length": 4}


@pytest.mark.parametrize(("args", "message"), [
    (["1abc"], "'1abc' is not a usable connector name"),
    (["class"], "'class' is not a usable connector name"),
    (["--", "-"], "'-' is not a usable connector name"),
    (["ok", "--task-type", "a b"], "task type 'a b' must be letters"),
])
def test_bad_names_are_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["init", "--dir", str(tmp_path / "new"), *args])
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {message}") and result.output.count("\n") == 1
    assert not (tmp_path / "new").exists()


def test_an_existing_directory_must_be_empty(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(cli, ["init", "x", "--dir", str(tmp_path / "full")])
    assert result.exit_code == 2 and "already exists and is not an empty directory" in result.output
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    made = CliRunner().invoke(cli, ["init", "flyte-connector-x", "--dir", str(tmp_path / "empty")])
    assert made.exit_code == 0, made.output
    assert (tmp_path / "empty" / "flyte_connector_x" / "connector.py").exists()


def test_a_template_round_trips_through_flyte_connector_test(tmp_path: Path) -> None:
    (tmp_path / "ex.json").write_text(json.dumps({"outcome": "succeed", "seconds": 0.1}))
    args = ["template", "--task-type", "job", "--inputs-example", str(tmp_path / "ex.json"),
            "-i", "record=", "--output", "answer=42", "--output", "job_id=job-1",
            "--custom", '{"retries": 3, "labels": {"team": "a"}}', "-o", str(tmp_path / "t.yaml")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    text = (tmp_path / "t.yaml").read_text()
    assert "value: {type: {simple: FLOAT}}" in text and "retries: 3\n" in text
    expected = make_template("job", inputs={"outcome": str, "seconds": float, "record": str},
                             outputs={"answer": int, "job_id": str},
                             custom={"retries": 3, "labels": {"team": "a"}})
    assert load_task(tmp_path / "t.yaml").template == expected
    done = run(FLYTE_CONNECTOR, "test", str(tmp_path / "t.yaml"), "--inputs", str(tmp_path / "ex.json"),
               "-i", "record=", "--plugins", "none", "-m", "run_jobs", "--json", cwd=FIXTURES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["outputs"]["answer"] == 42
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 2 and "exists; pass --force" in again.output
    assert CliRunner().invoke(cli, [*args, "--force"]).exit_code == 0


def test_template_prints_to_stdout_with_a_version() -> None:
    result = CliRunner().invoke(cli, ["template", "--task-type", "sql", "--task-type-version", "2",
                                      "-i", "ids=[1, 2]", "-i", "q=select"])
    assert result.exit_code == 0, result.output
    template = make_template("sql", version=2, inputs={"ids": list[int], "q": str})
    assert ParseDict(yaml.safe_load(result.output), TaskTemplate()) == template
    assert "# Run it: flyte-connector test TEMPLATE.yaml -i ids=... -i q=..." in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--custom", "[1]"], "--custom must be a JSON object, not a list"),
    (["--custom", "{"], "--custom is not valid JSON"),
    (["-i", "novalue"], "--input expects NAME=VALUE"),
    (["--output", "x"], "--output expects NAME=VALUE"),
    (["--inputs-example", "/nonexistent.json"], "cannot read inputs file"),
    (["-i", "mixed=[1, \"a\"]"], "input 'mixed': list elements have different types"),
])
def test_template_errors_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["template", "--task-type", "t", *args])
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {message}") and result.output.count("\n") == 1


def test_every_scaffold_file_is_package_data() -> None:
    """A wheel (the Docker image) must ship the templates, not only an editable install."""
    import tomllib

    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["connector_cli"]
    root = REPO / "connector_cli"
    files = [str(p.relative_to(root)) for p in (root / "authoring" / "templates").rglob("*") if p.is_file()]
    assert files and all(p.endswith(".tmpl") for p in files)
    shipped = {str(p.relative_to(root)) for glob in globs for p in root.glob(glob)}
    assert sorted(set(files) - shipped) == []
    assert "py.typed" in shipped  # mypy checks a connector against the SDK's own types
