"""Secrets a request carries never leave the daemon: not in GetTask's text fields, not in
status details, not in any log record (the connector's own included), in escaped forms too."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import grpc
import grpc.aio
import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector.service_pb2_grpc import AsyncConnectorServiceStub
from flyteidl2.core.security_pb2 import Connection
from flyteidl2.core.tasks_pb2 import TaskTemplate
from google.protobuf.json_format import MessageToJson

from connector_cli.daemon.logging_setup import (
    TEXT_FORMAT,
    JsonFormatter,
    configure_logging,
)
from connector_cli.masking import MaskingFilter
from connector_cli.sdk.registry import ConnectorRegistry
from connector_cli.testing import serve_in_background
from tests.conftest import REPO, cli_env
from tests.fixtures.connectors.leaky_connectors import LeakyConnector, LeakyMeta

SECRET = "s3cr'et\"\\key\nline2"
CATEGORY = pb.TaskCategory(name="leaky")
FORMS = [SECRET, repr(SECRET), repr(SECRET)[1:-1], json.dumps(SECRET)[1:-1], "s3cr'et", "line2"]


def leaks(text: str) -> list[str]:
    """The recognisable pieces of the secret found in `text`."""
    return [form for form in FORMS if form in text]


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """Root handlers writing text and JSON lines, each with the daemon's masking filter."""
    text, js = io.StringIO(), io.StringIO()
    handlers = []
    for stream, formatter in ((text, logging.Formatter(TEXT_FORMAT)), (js, JsonFormatter())):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handler.addFilter(MaskingFilter())
        handlers.append(handler)
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.INFO)
    for handler in handlers:
        root.addHandler(handler)
    yield text, js
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(old_level)


def test_configure_logging_installs_the_masking_filter() -> None:
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        configure_logging("info", "json", io.StringIO())
        assert any(isinstance(f, MaskingFilter) for f in root.handlers[0].filters)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


async def test_every_outgoing_field_and_log_record_is_masked(
    captured: tuple[io.StringIO, io.StringIO],
) -> None:
    registry = ConnectorRegistry()
    registry.register(LeakyConnector())
    connection = Connection(secrets={"api_key": SECRET})
    meta = LeakyMeta().encode()
    async with serve_in_background(registry) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            stub = AsyncConnectorServiceStub(channel)
            reply = await stub.GetTask(pb.GetTaskRequest(
                task_category=CATEGORY, resource_meta=meta, connection=connection), timeout=10)
            details = []
            for call in (
                stub.CreateTask(pb.CreateTaskRequest(template=TaskTemplate(type="leaky"),
                                                     connection=connection), timeout=10),
                stub.DeleteTask(pb.DeleteTaskRequest(task_category=CATEGORY, resource_meta=meta,
                                                     connection=connection), timeout=10),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call
                assert info.value.code() == grpc.StatusCode.INTERNAL
                details.append(info.value.details())
    shown = MessageToJson(reply) + str(reply)
    assert "****" in reply.resource.message and "****" in reply.resource.log_links[0].uri
    assert leaks(shown) == [], shown
    assert all("****" in d for d in details) and leaks("".join(details)) == [], details
    text, js = captured[0].getvalue(), captured[1].getvalue()
    assert "polling with key=****" in text and "connecting with '****'" in text
    assert "cancel failed" in text and "Traceback" in text
    assert leaks(text) == [], text
    assert leaks(js) == [], js


def test_debug_test_prints_no_raw_secret(tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    task.write_text("type: leaky\n")
    env = cli_env(PYTHONPATH=str(REPO / "tests" / "fixtures" / "connectors"),
                  FLYTE_SECRET_api_key=SECRET)
    done = subprocess.run(
        [sys.executable, "-m", "connector_cli", "--debug", "test", str(task), "--plugins", "none",
         "-m", "leaky_connectors:LeakyConnector", "--output-prefix", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" in done.stderr and "bad credentials" in done.stderr
    assert leaks(done.stdout + done.stderr) == [], done.stderr


async def test_a_set_x_shell_job_does_not_show_its_secret_in_get_task(tmp_path: Path) -> None:
    """The shell connector puts stderr in FAILED's message: `set -x` echoes the secret."""
    from flyteidl2.core.execution_pb2 import TaskExecution

    from connector_cli.testing import make_template

    secret = "shell-s3cret-token"
    connection = Connection(secrets={"api_token": secret})
    template = make_template("shell", custom={"script": 'set -x; echo "$api_token"; exit 3'})
    async with serve_in_background(plugins=["shell"]) as daemon:
        meta = await daemon.client.create(template, str(tmp_path), connection=connection)
        for _ in range(200):
            resource = await daemon.client.get(("shell", 0), meta, connection=connection)
            if resource.phase == TaskExecution.FAILED:
                break
            await asyncio.sleep(0.05)
    assert resource.phase == TaskExecution.FAILED
    assert "****" in resource.message and secret not in str(resource), resource.message
