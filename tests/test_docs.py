"""Docs cannot drift: code shown in docs is the real file, and the example really works."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from flyteidl2.core.execution_pb2 import TaskExecution
from flyteidl2.core.tasks_pb2 import TaskTemplate

from connector_cli.discovery import discover
from connector_cli.sdk.connector import call_method
from connector_cli.sdk.registry import ConnectorRegistry
from tests.conftest import REPO

EXAMPLE_BLOCK = re.compile(r"<!-- example: (\S+) -->\n```\w*\n(.*?)```", re.S)


def embedded_examples() -> list[tuple[Path, str, str]]:
    found = []
    for page in sorted((REPO / "docs").rglob("*.md")):
        for path, body in EXAMPLE_BLOCK.findall(page.read_text()):
            found.append((page, path, body))
    return found


def test_docs_embed_their_example_files_verbatim() -> None:
    examples = embedded_examples()
    assert examples, "no embedded examples found in docs/"
    for page, path, body in examples:
        assert (REPO / path).read_text() == body, f"{page.name} shows an outdated copy of {path}"


def test_readme_links_the_docs() -> None:
    readme = (REPO / "README.md").read_text()
    assert "make serve" in readme and "make test" in readme
    for link in re.findall(r"\]\((docs/[^)]+)\)", readme):
        assert (REPO / link).exists(), link


@pytest.fixture
def hello(registry: ConnectorRegistry, monkeypatch: pytest.MonkeyPatch) -> ConnectorRegistry:
    monkeypatch.syspath_prepend(str(REPO / "docs" / "examples"))
    report = discover(registry, plugins=(), modules=["hello_connector"])
    assert not report.failed, report.failed
    return registry


async def test_hello_example_creates_polls_and_deletes(hello: ConnectorRegistry) -> None:
    connector = hello.get_connector("hello")
    template = TaskTemplate(type="hello")
    meta = await call_method(connector, "create", template, "/tmp/out", {"name": "Ada", "seconds": 0.2})
    decoded = connector.metadata_type.decode(meta.encode())
    assert decoded == meta
    first = await call_method(connector, "get", decoded)
    assert first.phase == TaskExecution.RUNNING and first.message.endswith("s to go")
    time.sleep(0.25)
    done = await call_method(connector, "get", decoded)
    assert done.phase == TaskExecution.SUCCEEDED
    assert done.outputs == {"greeting": "Hello, Ada!"}
    assert done.log_links[0].uri.endswith("/hello/Ada")
    assert await call_method(connector, "delete", decoded) is None
    assert await call_method(connector, "delete", decoded) is None
