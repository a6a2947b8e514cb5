"""docs/layout.md cannot drift: every module and folder it names exists, and every folder of
the package is on the page."""

from __future__ import annotations

import re

from tests.conftest import REPO

LAYOUT = (REPO / "docs" / "layout.md").read_text()


def test_every_module_it_names_exists() -> None:
    named = set(re.findall(r"`((?:connector_cli|tests)/[\w/]+\.py)`", LAYOUT))
    assert len(named) > 30
    missing = sorted(path for path in named if not (REPO / path).is_file())
    assert not missing, f"docs/layout.md names modules that do not exist: {missing}"


def test_every_folder_it_names_exists_and_every_package_folder_is_named() -> None:
    folders = set(re.findall(r"`(connector_cli/[\w/]+)/`", LAYOUT))
    assert all((REPO / folder).is_dir() for folder in folders), folders
    packages = {
        f"connector_cli/{p.name}" for p in (REPO / "connector_cli").iterdir()
        if p.is_dir() and (p / "__init__.py").is_file()
    }
    unnamed = sorted(p for p in packages if f"`{p}/" not in LAYOUT)
    assert not unnamed, f"docs/layout.md does not describe {unnamed}"


def test_the_readme_links_it() -> None:
    assert "(docs/layout.md)" in (REPO / "README.md").read_text()
