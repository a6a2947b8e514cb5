"""`flyte-connector test`'s files and output: the temporary output prefix is removed
(unless kept), a long resource meta stays on one line, metrics print as a table (and as
JSON under --json)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

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
