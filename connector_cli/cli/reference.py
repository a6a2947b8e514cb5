"""Render the command line reference (docs/cli.md) from the click command tree.

`python -m connector_cli.cli.reference docs/cli.md` (or `make docs`) rewrites the page;
tests/test_cli_reference.py fails when the page no longer matches `--help`. Each command's
help is rendered as an 80-column terminal shows it, so the page equals what
`flyte-connector ... --help` prints there.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import click

PROG = "flyte-connector"
TERMINAL_COLUMNS = 80
REGENERATE = "make docs  (or: python -m connector_cli.cli.reference docs/cli.md)"


@dataclass(frozen=True)
class CommandDoc:
    """One command of the tree, with the context its help is rendered in."""

    path: tuple[str, ...]
    command: click.Command
    ctx: click.Context

    @property
    def title(self) -> str:
        return " ".join((PROG, *self.path))

    @property
    def anchor(self) -> str:
        return self.title.replace(" ", "-")


def walk(root: click.Command, path: tuple[str, ...] = (),
         parent: Optional[click.Context] = None) -> Iterator[CommandDoc]:
    """Every visible command under `root` (itself first), depth first in `--help` order."""
    name = path[-1] if path else PROG
    # `click.Context(..., terminal_width=W)` makes the formatter use width W; a terminal of
    # TERMINAL_COLUMNS gives W = TERMINAL_COLUMNS - 2 (see click.formatting.HelpFormatter).
    settings = {**root.context_settings, "terminal_width": TERMINAL_COLUMNS - 2}
    ctx = click.Context(root, info_name=name, parent=parent, **settings)
    yield CommandDoc(path, root, ctx)
    if isinstance(root, click.Group):
        for sub_name in root.list_commands(ctx):
            sub = root.get_command(ctx, sub_name)
            if sub is not None and not sub.hidden:
                yield from walk(sub, (*path, sub_name), ctx)


def env_rows(docs: Sequence[CommandDoc]) -> list[tuple[str, str, str]]:
    """(environment variable, option, commands) for every option read from the environment."""
    found: dict[tuple[str, str], list[str]] = {}
    for doc in docs:
        for param in doc.command.get_params(doc.ctx):
            if isinstance(param, click.Option) and param.envvar and not param.hidden:
                envvars = [param.envvar] if isinstance(param.envvar, str) else param.envvar
                option = max(param.opts, key=len)
                for envvar in envvars:
                    found.setdefault((envvar, option), []).append(doc.title)
    return [(env, opt, ", ".join(f"`{c}`" for c in cmds))
            for (env, opt), cmds in sorted(found.items())]


def render(root: click.Command) -> str:
    """The whole Markdown page."""
    docs = list(walk(root))
    lines = [
        "# Command line reference",
        "",
        "<!-- Generated from the click command tree by connector_cli/cli/reference.py;",
        f"     do not edit. Regenerate with: {REGENERATE} -->",
        "",
        "Every command below prints the same text with `--help`. Every option can also be",
        "set through the environment variable shown next to it.",
        "",
    ]
    lines += [f"- [`{d.title}`](#{d.anchor})" for d in docs]
    for doc in docs:
        help_text = doc.command.get_help(doc.ctx).rstrip("\n")
        lines += ["", f"## {doc.title}", "", "```text", help_text, "```"]
    lines += ["", "## Environment variables", "",
              "| Variable | Option | Commands |", "|---|---|---|"]
    lines += [f"| `{env}` | `{opt}` | {cmds} |" for env, opt, cmds in env_rows(docs)]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Write the page to the path given (default: print it)."""
    from connector_cli.cli import cli

    args = list(sys.argv[1:] if argv is None else argv)
    text = render(cli)
    if not args or args == ["-"]:
        sys.stdout.write(text)
    else:
        Path(args[0]).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
