"""`flyte-connector init` and `flyte-connector template`: scaffolding for authors."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from connector_cli.cli.options import Command, option


@click.command("init", cls=Command)
@click.argument("name")
@option("--dir", "directory", metavar="PATH", default=None,
        help="Where to create the package. Default: ./flyte-connector-NAME.")
@option("--task-type", metavar="TYPE", default=None,
        show_default="NAME as a Python name, e.g. my_service for my-service",
        help="The task type the connector serves.")
def init_command(name: str, directory: Optional[str], task_type: Optional[str]) -> None:
    """Create a new connector package NAME that works straight away.

    It has a pyproject with the flyte.connectors entry point, a connector module, an
    example task template and inputs, a README and tests using the testing kit. NAME
    becomes the Python package flyte_connector_NAME ('-' and spaces become '_').
    """
    from connector_cli.authoring.scaffold import init_package, next_steps

    made = init_package(name, directory, task_type)
    click.echo(f"Created {made.names.dist} in {made.root}/ "
               f"(connector {made.names.camel}, task type {made.names.task_type!r}):")
    for path in made.files:
        click.echo(f"  {path.relative_to(made.root)}")
    click.echo("Next:")
    for step in next_steps(made):
        click.echo(f"  {step}")


@click.command("template", cls=Command)
@option("--task-type", required=True, metavar="TYPE", help="The template's task type.")
@option("--task-type-version", "task_version", type=click.IntRange(min=0), default=0,
        show_default=True, help="The version of the task type the connector serves.")
@option("--version", "old_task_version", type=click.IntRange(min=0), default=None, hidden=True,
        envvar=None, help="Deprecated spelling of --task-type-version.")
@option("--input", "-i", "input_pairs", metavar="NAME=EXAMPLE", multiple=True,
        help="An input and an example value (repeatable); EXAMPLE is JSON when it "
        "parses, else a string. Its type is inferred from the example.")
@option("--inputs-example", metavar="FILE", default=None,
        help="Inputs from an example inputs file (a JSON or YAML object), as for `test`.")
@option("--output", "output_pairs", metavar="NAME=EXAMPLE", multiple=True,
        help="An output and an example value (repeatable).")
@option("--custom", metavar="JSON", default=None,
        help="The template's custom section, a JSON object the connector reads.")
@option("--out", "-o", "out_file", metavar="FILE", default=None,
        help="Write the YAML to FILE instead of standard output.")
@option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def template_command(task_type: str, task_version: int, old_task_version: Optional[int],
                     input_pairs: tuple[str, ...], inputs_example: Optional[str],
                     output_pairs: tuple[str, ...], custom: Optional[str],
                     out_file: Optional[str], force: bool) -> None:
    """Write a starter task template (YAML) that `flyte-connector test` runs as is.

    The interface is inferred from example values: 3 is an integer, 1.5 a float,
    "x" a string, [1, 2] a list of integers, {"a": 1} a map. Edit the YAML for
    types examples cannot show (datetimes, files).
    """
    from connector_cli.authoring.scaffold import parse_custom, read_examples, starter_template_yaml
    from connector_cli.errors import UsageError

    if old_task_version is not None:
        click.echo("Warning: --version is deprecated; use --task-type-version", err=True)
        task_version = old_task_version
    inputs = read_examples(input_pairs, "--input", inputs_example)
    outputs = read_examples(output_pairs, "--output")
    hint = f"flyte-connector test {out_file or 'TEMPLATE.yaml'}"
    if inputs:
        hint += f" --inputs {inputs_example}" if inputs_example and not input_pairs else \
            " " + " ".join(f"-i {name}=..." for name in inputs)
    text = starter_template_yaml(task_type, version=task_version, inputs=inputs,
                                 outputs=outputs, custom=parse_custom(custom), run_hint=hint)
    if out_file is None:
        click.echo(text, nl=False)
        return
    path = Path(out_file)
    if path.exists() and not force:
        raise UsageError(f"{out_file!r} exists; pass --force to overwrite it")
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {out_file!r}: {exc.strerror}") from None
    click.echo(f"Wrote {out_file}", err=True)
