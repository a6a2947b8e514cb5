"""`make bench`'s flytekit comparison (bench/bench_flytekit.py) runs end to end: both
servers start and answer the Flyte 1 load generator without errors, the table and the
isolation check are printed. A smoke run (one round, 0.2 s loads, about 10 s): its
figures are not judged, since a test machine is no place to time anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_the_flytekit_comparison_runs_end_to_end() -> None:
    out = subprocess.run(
        [sys.executable, "bench/bench_flytekit.py", "--rounds", "1", "--seconds", "0.2"],
        cwd=REPO, capture_output=True, text=True, timeout=100)
    if out.returncode == 2 and "skipping" in out.stderr:  # no kit, or no flytekit
        pytest.skip(out.stderr.strip())
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    for kind in ("ours", "pyflyte"):
        for rpc in ("get", "create"):
            run = next(row for row in text.splitlines() if row.split()[:2] == [kind, rpc])
            assert "errors" not in run and "req/s" in run, run
    for figure in ("GetTask req/s, c=64", "server CPU per CreateTask (us)",
                   "p99 GetTask, c=64 (ms)", "RSS idle (MiB)", "RSS after load (MiB)"):
        assert f"| {figure} |" in text, text
    for listing in ("ListAgents", "ListConnectors"):
        assert f"isolation: {listing} during 32 GetTasks" in text, text
    assert " exited " not in text, text
    assert "targets " in text.splitlines()[-1], text
