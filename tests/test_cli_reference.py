"""docs/cli.md is generated from the command tree and equals what `--help` really prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click

from connector_cli.cli import cli
from connector_cli.cli.reference import PROG, REGENERATE, TERMINAL_COLUMNS, render, walk
from tests.conftest import REPO

PAGE = REPO / "docs" / "cli.md"
HELP_BLOCK = re.compile(r"^## (flyte-connector[^\n]*)\n\n```text\n(.*?)\n```$", re.S | re.M)


def test_cli_md_is_up_to_date() -> None:
    assert PAGE.exists(), f"docs/cli.md is missing; run: {REGENERATE}"
    assert PAGE.read_text() == render(cli), (
        f"docs/cli.md is out of date with the CLI's --help; run: {REGENERATE}"
    )


def test_each_block_is_what_help_prints_in_a_terminal() -> None:
    """Run the real command line once per command, as a user in an 80-column terminal."""
    blocks = dict(HELP_BLOCK.findall(PAGE.read_text()))
    paths = [doc.path for doc in walk(cli)]
    assert {" ".join((PROG, *p)) for p in paths} == set(blocks), (
        f"docs/cli.md does not list exactly the CLI's commands; run: {REGENERATE}"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYTE_CONNECTOR_")}
    env["COLUMNS"] = str(TERMINAL_COLUMNS)
    procs = {
        path: subprocess.Popen([sys.executable, "-m", "connector_cli", *path, "--help"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, cwd=REPO)
        for path in paths
    }
    for path, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        title = " ".join((PROG, *path))
        assert out.rstrip("\n") == blocks[title], (
            f"`{title} --help` differs from docs/cli.md; run: {REGENERATE}"
        )


def _toy_cli() -> click.Group:
    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    def root() -> None:
        """Toy root."""

    @root.group("outer")
    @click.option("--zone", envvar="TOY_ZONE", show_envvar=True, help="Where.")
    def outer(zone: str) -> None:
        """Outer group."""

    @outer.command("inner")
    @click.option("--level", "-l", envvar=["TOY_LEVEL", "TOY_LVL"], help="How much.")
    def inner(level: str) -> None:
        """Inner command."""

    @root.command("secret", hidden=True)
    @click.option("--key", envvar="TOY_KEY")
    def secret(key: str) -> None:
        """Hidden."""

    return root


def test_render_walks_nested_groups_and_skips_hidden_commands() -> None:
    page = render(_toy_cli())
    titles = [t for t, _ in HELP_BLOCK.findall(page)]
    assert titles == [PROG, f"{PROG} outer", f"{PROG} outer inner"]
    assert "Usage: flyte-connector outer inner [OPTIONS]" in page
    assert "-h, --help" in dict(HELP_BLOCK.findall(page))[f"{PROG} outer inner"]
    assert "[env var: TOY_ZONE]" in page
    assert "TOY_KEY" not in page and "secret" not in page
    assert "| `TOY_LEVEL` | `--level` | `flyte-connector outer inner` |" in page
    assert "| `TOY_LVL` | `--level` | `flyte-connector outer inner` |" in page
    assert "- [`flyte-connector outer inner`](#flyte-connector-outer-inner)" in page


def test_module_writes_the_page_and_make_docs_runs_it(tmp_path: Path) -> None:
    out = tmp_path / "cli.md"
    subprocess.run([sys.executable, "-m", "connector_cli.cli.reference", str(out)],
                   check=True, cwd=REPO, timeout=60)
    assert out.read_text() == render(cli)
    makefile = (REPO / "Makefile").read_text()
    target = re.search(r"^docs:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert target, "Makefile has no `docs` target"
    assert "-m connector_cli.cli.reference docs/cli.md" in target.group(1)
