"""The bundled example through `flyte-connector test` (in-process and against a daemon),
and the docs showing the real example files."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from slurm_cluster import SlurmCluster

from connector_cli.testing import serve_in_background

SLURM_DIR = Path(__file__).resolve().parent.parent
EXAMPLES = SLURM_DIR / "examples"
REPO = SLURM_DIR.parent.parent
FLYTE_CONNECTOR = str(Path(sys.executable).with_name("flyte-connector"))
EXAMPLE = [str(EXAMPLES / "word_count.yaml"),
           "--inputs", str(EXAMPLES / "word_count.inputs.json")]
EXAMPLE_BLOCK = re.compile(r"<!-- example: (\S+) -->\n```\w*\n(.*?)```", re.S)


def env() -> dict[str, str]:
    """The test's environment (SLURM_CONF, job root) without other daemon settings."""
    keep = ("FLYTE_CONNECTOR_SLURM_",)
    return {k: v for k, v in os.environ.items()
            if not k.startswith("FLYTE_CONNECTOR_") or k.startswith(keep)}


def check_example_result(result: dict) -> None:
    assert result["status"] == "succeeded", result
    outputs = result["outputs"]
    assert outputs["exit_code"] == 0 and outputs["top_word"] == "be"
    counts = Path(outputs["counts"].removeprefix("file://")).read_text().splitlines()
    assert counts[:2] == ["      2 be", "      2 to"] and "      1 $(whoami)" in counts
    assert result["logs"][0].startswith("job ") and result["logs"][0].endswith("with 1 CPU(s)")
    assert result["logs"][1:] == ["      2 be", "      2 to", "      1 $(whoami)"]


def test_the_example_runs_with_flyte_connector_test(slurm: SlurmCluster) -> None:
    done = subprocess.run(
        [FLYTE_CONNECTOR, "test", *EXAMPLE, "--plugins", "slurm-batch", "--json", "--logs",
         "--metrics", "--poll-interval", "0.2", "--timeout", "60"],
        capture_output=True, text=True, env=env(), timeout=90,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    check_example_result(result)
    assert {m["metric"] for m in result["metrics"]} == {
        "cpu_seconds", "max_rss_bytes", "elapsed_seconds"}


async def test_the_example_runs_against_a_daemon(slurm: SlurmCluster) -> None:
    async with serve_in_background(plugins=["slurm-batch"]) as daemon:
        proc = await asyncio.create_subprocess_exec(
            FLYTE_CONNECTOR, "test", *EXAMPLE, "--endpoint", daemon.address, "--json", "--logs",
            "--poll-interval", "0.2", "--timeout", "60",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(),
        )
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()
    check_example_result(json.loads(out))


def test_a_bad_option_is_one_line_and_exit_status_2(slurm: SlurmCluster, tmp_path: Path) -> None:
    task = tmp_path / "bad.yaml"
    task.write_text("type: slurm\ntask_type_version: 1\n"
                    "custom:\n  script: 'true'\n  partition: nope\n")
    done = subprocess.run([FLYTE_CONNECTOR, "test", str(task), "--plugins", "slurm-batch"],
                          capture_output=True, text=True, env=env(), timeout=60)
    assert done.returncode == 2, done.stderr
    assert "sbatch refused the job: invalid partition specified: nope" in done.stderr
    assert "Traceback" not in done.stderr


def test_docs_show_the_real_example_files() -> None:
    shown = []
    for page in (REPO / "docs" / "plugins" / "slurm.md", SLURM_DIR / "README.md"):
        for path, body in EXAMPLE_BLOCK.findall(page.read_text()):
            assert (REPO / path).read_text() == body, \
                f"{page.name} shows an outdated copy of {path}"
            shown.append(path)
    assert "plugins/slurm/examples/word_count.yaml" in shown
    assert "plugins/slurm/examples/word_count.inputs.json" in shown
