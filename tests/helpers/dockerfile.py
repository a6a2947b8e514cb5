"""Reading Dockerfiles without a Docker engine: instructions, stages, build arguments."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, buffer = [], ""
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("#") or (not buffer and not raw.strip()):
            continue
        if raw.rstrip().endswith("\\"):
            buffer += raw.rstrip()[:-1] + " "
            continue
        lines.append(buffer + raw)
        buffer = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in lines]


def stages(path: Path = DOCKERFILE) -> list[list[tuple[str, str]]]:
    """The instructions of each stage, FROM first (ARGs before the first FROM dropped)."""
    out: list[list[tuple[str, str]]] = []
    for op, rest in dockerfile_instructions(path):
        if op == "FROM":
            out.append([])
        if out:
            out[-1].append((op, rest))
    return out


def final_stage(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    return stages(path)[-1]


def build_arg(name: str, path: Path = DOCKERFILE) -> str:
    """The default of ARG `name` (quotes removed)."""
    for op, rest in dockerfile_instructions(path):
        if op == "ARG" and rest.split("=", 1)[0] == name:
            return rest.split("=", 1)[1].strip().strip('"') if "=" in rest else ""
    raise AssertionError(f"{path.name} has no ARG {name}")


def run_commands(stage: list[tuple[str, str]]) -> list[str]:
    """The shell command of each RUN of a stage, without BuildKit's `--mount=...` flags."""
    return [re.sub(r"^(--\S+\s+)+", "", rest) for op, rest in stage if op == "RUN"]


def stage_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for op, rest in stage:
        if op == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env
