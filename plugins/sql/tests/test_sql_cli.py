"""The shipped examples run end to end through `flyte-connector test` (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sql_pgserver import PgServer
from sql_testlib import PLUGIN

CLI = [sys.executable, "-m", "connector_cli"]
EXAMPLES = PLUGIN / "examples"


def run_cli(*args: str) -> tuple[int, dict, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLYTE_CONNECTOR_", "FLYTE_SECRET_"))}
    done = subprocess.run([*CLI, "test", *args, "--json"], capture_output=True, text=True,
                          timeout=60, env=env, check=False)
    return done.returncode, json.loads(done.stdout or "{}"), done.stderr


def test_the_sqlite_example_runs_with_its_inputs(tmp_path: Path) -> None:
    code, result, err = run_cli(str(EXAMPLES / "squares.yaml"), "--inputs",
                                str(EXAMPLES / "squares.inputs.json"), "--output-prefix", str(tmp_path),
                                "--poll-interval", "0.1")
    assert code == 0, err
    assert result["phase"] == "SUCCEEDED" and result["outputs"]["row_count"] == 4
    dataset = result["outputs"]["result"]
    assert dataset["format"] == "csv" and dataset["uri"].startswith(str(tmp_path))
    label = json.loads((EXAMPLES / "squares.inputs.json").read_text())["label"]
    assert Path(dataset["uri"]).read_text().splitlines() == [
        "i,square,label", *(f"{i},{i * i},{label}" for i in range(1, 5))]


def test_the_postgres_example_takes_its_password_from_a_secret(
    tmp_path: Path, pg: PgServer
) -> None:
    text = (EXAMPLES / "postgres.yaml").read_text()
    task = tmp_path / "postgres.yaml"
    task.write_text(text.replace("127.0.0.1:5432", f"127.0.0.1:{pg.port}"))
    code, result, err = run_cli(str(task), "--inputs", str(EXAMPLES / "postgres.inputs.json"),
                                "--secret", f"app-db-password={pg.password}", "--output-prefix",
                                str(tmp_path / "out"), "--poll-interval", "0.1")
    assert code == 0, err
    result_file = Path(result["outputs"]["result"]["uri"])
    rows = [json.loads(line) for line in result_file.read_text().splitlines()]
    assert rows == [{"n": 4, "total": 16}, {"n": 5, "total": 25}]
    assert pg.password not in json.dumps(result) + err


def test_the_postgres_example_with_a_wrong_secret_fails_as_a_job(
    tmp_path: Path, pg: PgServer
) -> None:
    task = tmp_path / "postgres.yaml"
    task.write_text((EXAMPLES / "postgres.yaml").read_text().replace(
        "127.0.0.1:5432", f"127.0.0.1:{pg.port}"))
    code, result, err = run_cli(str(task), "-i", "min_total=10", "--secret",
                                "app-db-password=not-the-password", "--output-prefix",
                                str(tmp_path / "out"), "--poll-interval", "0.1")
    assert code == 1, err
    assert result["phase"] == "FAILED"
    assert 'password authentication failed for user "app"' in result["message"]
