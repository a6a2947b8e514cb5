"""Run every benchmark in bench/ (files named bench_*.py), each in its own process.

Usage: python bench/run.py [NAME ...]   (NAME matches bench_NAME.py; default: all)
Each benchmark prints its own figures, as ratios against a baseline measured in the
same run. They run in name order: bench_flytekit.py (against `pyflyte serve connector`)
right after bench_flyte_sdk.py (against `c0`). The exit status is non-zero if any benchmark script failed to run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in argv]
    if not scripts:
        print("no benchmarks matched", file=sys.stderr)
        return 2
    failed = []
    for script in scripts:
        print(f"\n=== {script.stem} ===", flush=True)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(script)], cwd=HERE.parent)
        print(f"--- {script.stem}: {time.perf_counter() - start:.1f}s", flush=True)
        if result.returncode != 0:
            failed.append(script.stem)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
