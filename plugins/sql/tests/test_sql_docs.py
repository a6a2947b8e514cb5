"""The SQL docs cannot drift: shown examples are the real files, links resolve."""

from __future__ import annotations

import re

from sql_testlib import PLUGIN, REPO

EXAMPLE_BLOCK = re.compile(r"<!-- example: (\S+) -->\n```\w*\n(.*?)```", re.S)
PAGE = REPO / "docs" / "plugins" / "sql.md"


def test_the_docs_page_embeds_every_example_verbatim() -> None:
    shown = dict(EXAMPLE_BLOCK.findall(PAGE.read_text()))
    examples = {str(p.relative_to(REPO)) for p in (PLUGIN / "examples").iterdir()}
    assert set(shown) == examples
    for path, body in shown.items():
        assert (REPO / path).read_text() == body, f"docs/plugins/sql.md shows an old {path}"


def test_the_readme_links_resolve_and_its_command_uses_real_files() -> None:
    readme = (PLUGIN / "README.md").read_text()
    for link in re.findall(r"\]\(([^)]+)\)", readme):
        assert (PLUGIN / link).resolve().exists(), link
    for path in re.findall(r"plugins/sql/examples/\S+", readme + PAGE.read_text()):
        assert (REPO / path.rstrip("`.,")).exists(), path
