"""`test` leaves nothing behind and shows metrics and metas readably; examples pair with
their inputs; the daemon and the docs example speak plainly (issue 14, items 5 and 6)."""

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

WORD_COUNT = ["plugins/shell/examples/word_count.yaml",
              "--inputs", "plugins/shell/examples/word_count.inputs.json"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connector_cli", *args], capture_output=True,
                          text=True, timeout=120, env=cli_env(**env), cwd=REPO)


def output_prefix(stdout: str) -> Path:
    match = re.search(r"output prefix: (\S+)", ANSI.sub("", stdout))
    assert match, stdout
    return Path(match.group(1))


def test_the_temporary_output_prefix_is_removed_after_a_run() -> None:
    result = run_cli("test", *WORD_COUNT, "--progress", "plain")
    assert result.returncode == 0, result.stderr
    prefix = output_prefix(result.stdout)
    assert prefix.name.startswith("flyte-connector-test-") and not prefix.exists()
    assert result.stdout.splitlines()[-1].endswith(
        f"removing {prefix} with the job's files (--keep or --output-prefix PATH keeps them)")


def test_it_is_removed_when_the_run_fails_before_create(tmp_path: Path) -> None:
    task = tmp_path / "nobody.yaml"
    task.write_text("type: nobody-serves-this\n")
    result = run_cli("test", str(task), "--plugins", "none", "--progress", "plain")
    assert result.returncode == 2
    assert result.stderr == ("Error: no connector for task type 'nobody-serves-this' v0; "
                             "served: none (no plugins loaded)\n")
    assert not output_prefix(result.stdout).exists()


def test_keep_and_output_prefix_keep_the_files(tmp_path: Path) -> None:
    kept = run_cli("test", *WORD_COUNT, "--progress", "plain", "--keep")
    assert kept.returncode == 0, kept.stderr
    prefix = output_prefix(kept.stdout)
    try:
        assert any(prefix.rglob("counts.txt")) and "removing" not in kept.stdout
    finally:
        subprocess.run(["rm", "-rf", str(prefix)], check=True)
    given = run_cli("test", *WORD_COUNT, "--progress", "plain", "--output-prefix",
                    str(tmp_path / "out"))
    assert given.returncode == 0 and any((tmp_path / "out").rglob("counts.txt"))


def test_the_live_view_keeps_a_long_resource_meta_on_one_line() -> None:
    result = run_cli("test", *WORD_COUNT, "--progress", "live", COLUMNS="80")
    assert result.returncode == 0, result.stderr
    lines = ANSI.sub("", result.stdout).replace("\r", "\n").splitlines()
    index = next(i for i, line in enumerate(lines) if "created the job; resource meta:" in line)
    line = lines[index]
    assert line.endswith("…") and len(line) <= 80, line
    assert re.match(r"\d\d:\d\d:\d\d ", lines[index + 1]) or "poll" in lines[index + 1]


def test_metrics_are_a_table_and_json_under_json() -> None:
    text = run_cli("test", *WORD_COUNT, "--progress", "plain", "--metrics")
    assert text.returncode == 0, text.stderr
    block = text.stdout.split("\nmetrics:\n", 1)[1].split("\noutputs:\n", 1)[0].splitlines()
    assert re.fullmatch(r"  Metric +Labels +Last value +Samples", block[0]), block
    rows = {line.split()[0]: line for line in block[1:]}
    assert re.fullmatch(r"  cpu_seconds +pid=\d+ +[\d.e-]+ +\d+", rows["cpu_seconds"])
    assert re.fullmatch(r"  memory_peak_rss_bytes +pid=\d+ +\d+ +\d+",
                        rows["memory_peak_rss_bytes"])
    assert "resultType" not in text.stdout
    as_json = run_cli("test", *WORD_COUNT, "--json", "--metrics")
    metrics = json.loads(as_json.stdout)["metrics"]
    assert {m["metric"] for m in metrics} >= {"cpu_seconds", "memory_peak_rss_bytes"}
    assert all(m["data"]["resultType"] == "matrix" for m in metrics)


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
