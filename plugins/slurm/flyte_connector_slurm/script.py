"""The batch script sbatch receives on stdin: a fixed wrapper around the task's script.

Inputs are rendered into the wrapper as `export FLYTE_INPUT_<NAME>=<single-quoted value>`
lines, not passed through the environment of `sbatch`: the same script then works for a
local `sbatch` and for one run over SSH (where a server accepts no environment), and
slurmctld keeps the values with the job. Quoting is `shlex.quote`, so a value is data to
bash however it is written. The task's own script runs in a child bash; the wrapper writes
its exit code to `JOB_DIR/exit_code`, which tells how a job ended after slurmctld has
forgotten it (no accounting, older than `MinJobAge`).
"""

from __future__ import annotations

import shlex
from typing import Any, Mapping

from connector_cli.sdk.job_env import env_name, input_text
from flyte_connector_slurm.spec import fail

INPUT_PREFIX = "FLYTE_INPUT_"
EXIT_FILE = "exit_code"
TERMINATED = "terminated"
MAX_INPUT_BYTES = 1024 * 1024

WRAPPER = """#!/bin/bash
# Written by flyte-connector-slurm. The task's script runs in a child bash below.
export PATH="${{PATH:-/usr/local/bin:/usr/bin:/bin}}"
export FLYTE_JOB_DIR={root}/"$SLURM_JOB_ID"
export FLYTE_OUTPUT_DIR="$FLYTE_JOB_DIR/outputs"
mkdir -p "$FLYTE_OUTPUT_DIR" && cd "$FLYTE_JOB_DIR" || exit 1
{exports}
_flyte_record() {{
  printf '%s\\n' "$1" > "$FLYTE_JOB_DIR/{exit_file}.tmp" && \\
    mv -f "$FLYTE_JOB_DIR/{exit_file}.tmp" "$FLYTE_JOB_DIR/{exit_file}"
}}
trap '_flyte_record {terminated}; exit 143' TERM
/bin/bash -c {script} flyte-task &
wait "$!"
_flyte_rc=$?
_flyte_record "$_flyte_rc"
exit "$_flyte_rc"
"""


def input_exports(inputs: Mapping[str, Any]) -> list[str]:
    """One `export NAME='value'` line per input; NUL bytes and oversized values refused."""
    lines: list[str] = []
    seen: dict[str, str] = {}
    for name in sorted(inputs):
        key = env_name(name)
        if key in seen:
            raise fail(f"inputs {seen[key]!r} and {name!r} both map to ${key}")
        seen[key] = name
        text = input_text(inputs[name])
        if "\0" in text:
            raise fail(f"input {name!r} contains a NUL byte, which a batch script cannot carry")
        if len(text.encode()) > MAX_INPUT_BYTES:
            raise fail(f"input {name!r} is over {MAX_INPUT_BYTES // 1024} KiB; pass a file instead")
        lines.append(f"export {key}={shlex.quote(text)}")
    return lines


def render(script: str, inputs: Mapping[str, Any], job_root: str) -> str:
    """The whole batch script for `script` with `inputs`, writing under `job_root`."""
    return WRAPPER.format(
        root=shlex.quote(job_root),
        exports="\n".join(input_exports(inputs)),
        exit_file=EXIT_FILE,
        terminated=TERMINATED,
        script=shlex.quote(script),
    )
