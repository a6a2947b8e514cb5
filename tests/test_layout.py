"""docs/layout.md cannot drift: every module and folder it names exists, and every folder of
the package is on the page."""

from __future__ import annotations

import ast
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


# Lower layers never import higher ones; a folder may import its own layer and below.
LAYERS = [
    {"errors", "_version", "record", "shutdown"},
    {"sdk", "literals", "config", "signing", "connections", "shield", "offload"},
    {"connector_cli", "discovery", "dispatch", "wire", "client", "foreign", "adapters", "masking",
     "adoption", "responses", "routes",
     "task_requests", "connection_args", "v1_messages"},
    {"daemon", "run", "authoring"},
    {"testing", "pytest_plugin"},
    {"cli", "__main__"},
]


def _imports() -> dict[str, set[str]]:
    """Each package module's place (its folder, or itself at the top) -> the places and
    third-party top-level packages it imports, lazily or not."""
    found: dict[str, set[str]] = {}
    for path in (REPO / "connector_cli").rglob("*.py"):
        if "templates" in path.parts:
            continue
        parts = path.relative_to(REPO).with_suffix("").parts
        place = parts[1] if len(parts) > 1 and parts[1] != "__init__" else "connector_cli"
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                dotted = name.split(".")
                target = (dotted[1] if len(dotted) > 1 else "connector_cli") \
                    if dotted[0] == "connector_cli" else dotted[0]
                found.setdefault(place, set()).add(target)
    return found


def test_imports_only_run_downwards_and_only_the_cli_uses_click_and_rich() -> None:
    level = {place: n for n, places in enumerate(LAYERS) for place in places}
    imports = _imports()
    assert set(imports) <= set(level), f"add {set(imports) - set(level)} to LAYERS"
    upward = sorted(
        f"{place} imports {target}"
        for place, targets in imports.items() for target in targets
        if target in level and level[target] > level[place]
    )
    assert not upward, upward
    ui = sorted(f"{place} imports {lib}" for place, targets in imports.items()
                for lib in targets & {"click", "rich"} if place != "cli")
    assert not ui, ui


def test_no_test_module_imports_another() -> None:
    """Shared cases live in tests/conftest.py or tests/helpers/, never in a test module."""
    crossings = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            crossings += [f"{path.name} imports {name}" for name in names
                          if name.startswith("tests.test_")]
    assert not crossings, crossings
