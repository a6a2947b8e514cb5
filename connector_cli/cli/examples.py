"""Each command's one-sentence summary (the top-level `--help` list) and the examples its
own `--help` ends with, kept in one table so they are easy to review together.

tests/test_help_examples.py parses every example with the real command line, and runs
the ones that need no daemon.
"""

from __future__ import annotations

import click

SUMMARIES = {
    "init": "Create a new connector package that works straight away.",
    "list": "List the connectors, their task types and failed plugins.",
    "serve": "Serve the connectors to Flyte over gRPC: the daemon.",
    "template": "Write a starter task template (YAML) to run with test.",
    "test": "Run a task through its connector end to end.",
}

EXAMPLES = {
    "": (
        "flyte-connector list",
        "flyte-connector test examples/task.yaml --inputs examples/task.inputs.json",
        "flyte-connector serve --port 8000",
    ),
    "init": (
        "flyte-connector init weather",
        "flyte-connector init my-service --dir services/my-service --task-type my_job",
    ),
    "list": (
        "flyte-connector list",
        "flyte-connector list --json --plugins none -m my_connector",
        "flyte-connector list --endpoint localhost:8000",
    ),
    "serve": (
        "flyte-connector serve",
        "FLYTE_CONNECTOR_METRICS_PORT=9091 flyte-connector serve --log-format json",
        "flyte-connector serve --port 50051 --plugins none -m my_connector",
    ),
    "template": (
        "flyte-connector template --task-type weather -i city=Paris -i days=3",
        "flyte-connector template --task-type sql --task-type-version 1 -o sql.yaml",
    ),
    "test": (
        "flyte-connector test examples/task.yaml --inputs examples/task.inputs.json",
        "flyte-connector test task.yaml -i limit=4 --json",
        "flyte-connector test task.yaml --endpoint localhost:8000 --logs",
    ),
}


def epilog(lines: tuple[str, ...]) -> str:
    """The examples as a help epilog click prints as is (the \\b keeps the lines)."""
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


def add_help(command: click.Command, name: str = "") -> None:
    """Give `command` its summary and examples."""
    if name in SUMMARIES:
        command.short_help = SUMMARIES[name]
    command.epilog = epilog(EXAMPLES[name])
