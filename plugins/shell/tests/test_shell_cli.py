"""The bundled example through `flyte-connector test`, in-process and against a daemon;
and the docs page showing the real example files."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from conftest import EXAMPLES, SHELL_DIR, alive

from connector_cli.testing import serve_in_background
from flyte_connector_shell import procfs
from flyte_connector_shell.connector import ShellMeta

FLYTE_CONNECTOR = str(Path(sys.executable).with_name("flyte-connector"))
EXAMPLE = [str(EXAMPLES / "word_count.yaml"), "--inputs", str(EXAMPLES / "word_count.inputs.json")]
REPO = SHELL_DIR.parent.parent
EXAMPLE_BLOCK = re.compile(r"<!-- example: (\S+) -->\n```\w*\n(.*?)```", re.S)


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FLYTE_CONNECTOR_")}


def check_example_result(result: dict) -> None:
    assert result["status"] == "succeeded", result
    assert result["outputs"]["exit_code"] == 0
    counts = Path(result["outputs"]["counts"]).read_text().split("\n")
    assert counts[:2] == ["      2 be", "      2 to"]
    assert "      1 $(whoami)" in counts
    assert result["logs"] == ["distinct words: 9", "      2 be", "      2 to", "      1 $(whoami)"]


def test_the_example_runs_with_flyte_connector_test(tmp_path: Path) -> None:
    done = subprocess.run(
        [FLYTE_CONNECTOR, "test", *EXAMPLE, "--plugins", "shell", "--json", "--logs", "--metrics",
         "--poll-interval", "0.05", "--output-prefix", str(tmp_path)],
        capture_output=True, text=True, env=env(), timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    check_example_result(result)
    assert Path(result["outputs"]["counts"]).is_relative_to(tmp_path)
    assert {m["metric"] for m in result["metrics"]} >= {"cpu_seconds", "memory_peak_rss_bytes"}


async def test_the_example_runs_against_a_daemon(tmp_path: Path) -> None:
    async with serve_in_background(plugins=["shell"]) as daemon:
        proc = await asyncio.create_subprocess_exec(
            FLYTE_CONNECTOR, "test", *EXAMPLE, "--endpoint", daemon.address, "--json", "--logs",
            "--poll-interval", "0.05", "--output-prefix", str(tmp_path),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(),
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    check_example_result(json.loads(out))


def test_a_timed_out_run_deletes_the_whole_job(tmp_path: Path) -> None:
    task = tmp_path / "sleepy.yaml"
    task.write_text("type: shell\ncustom:\n  script: sh -c 'sleep 30' & sleep 30\n")
    started = time.monotonic()
    done = subprocess.run(
        [FLYTE_CONNECTOR, "test", str(task), "--plugins", "shell", "--json", "--timeout", "1",
         "--poll-interval", "0.1", "--output-prefix", str(tmp_path / "out")],
        capture_output=True, text=True, env=env(), timeout=60,
    )
    assert done.returncode == 3, done.stderr
    result = json.loads(done.stdout)
    assert result["deleted"] is True and result["delete_error"] is None
    meta = ShellMeta.decode(json.dumps(result["resource_meta"]).encode())
    assert not alive(meta.pid)
    assert procfs.job_processes(meta.pid, meta.start_ticks, meta.boot_id, nonce=meta.nonce) == []
    assert time.monotonic() - started < 20


def test_docs_show_the_real_example_files() -> None:
    shown = []
    for page in (REPO / "docs" / "plugins" / "shell.md", SHELL_DIR / "README.md"):
        for path, body in EXAMPLE_BLOCK.findall(page.read_text()):
            assert (REPO / path).read_text() == body, f"{page.name} shows an outdated copy of {path}"
            shown.append(path)
    assert "plugins/shell/examples/word_count.yaml" in shown
    assert "plugins/shell/examples/word_count.inputs.json" in shown
