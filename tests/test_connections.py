"""The connections file (`serve --connections`): parsing, first match, reload on change,
a broken file keeping the last good one; and the unmodified flyteplugins-databricks
connector taking its token from the file, per project, rotated without a restart."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator

import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.core.execution_pb2 import TaskExecution

from connector_cli.connections import (
    ConnectionsSource,
    Scope,
    fill,
    parse,
    unwrap_scope,
    wrap_scope,
)
from connector_cli.errors import ResourceMetaError, UsageError
from connector_cli.signing import MetaSigner

SECRET = "s3cr3t-value-from-a-file"


def write_secret(path: Path, value: str) -> str:
    path.write_text(value + "\n")
    return str(path)


def test_rules_match_first_by_task_type_project_and_domain(tmp_path: Path) -> None:
    token = write_secret(tmp_path / "token", SECRET)
    connections = parse(f"""
connections:
  - task_type: databricks
    project: alpha
    domain: production
    secrets: {{databricks_token: {{file: {token}}}}}
  - task_type: databricks
    project: alpha
    secrets: {{databricks_token: {{env: ALPHA_TOKEN}}}}
    configs: {{region: eu}}
  - task_type: databricks
    secrets: {{databricks_token: {{value: fallback-token, inline: true}}}}
""", "test.yaml", environ={"ALPHA_TOKEN": "alpha-env-token"})
    def token_for(project: Any, domain: Any) -> str:
        rule = connections.lookup("databricks", Scope(project, domain))
        assert rule is not None
        return rule.secrets["databricks_token"]

    assert token_for("alpha", "production") == SECRET  # the trailing newline is dropped
    assert token_for("alpha", "development") == "alpha-env-token"
    assert token_for("beta", "production") == "fallback-token"
    assert token_for(None, None) == "fallback-token"
    assert connections.lookup("snowflake", Scope("alpha")) is None
    assert connections.narrowed("databricks")
    assert SECRET not in repr(connections.rules)


@pytest.mark.parametrize("body, expected", [
    ("secrets: {k: plain-value}", "needs {value: ..., inline: true}"),
    ("secrets: {k: {value: plain-value}}", "needs inline: true"),
    ("secrets: {k: {env: NOT_SET_ANYWHERE}}", "NOT_SET_ANYWHERE is not set"),
    ("secrets: {k: {file: /nonexistent/secret}}", "cannot read /nonexistent/secret"),
    ("secrets: {k: {file: /x, env: Y}}", "exactly one of file, env or value"),
    ("secrets: {k: {env: HOME}}\n    configs: {k: v}", "both a secret and a config"),
    ("colour: blue", "unknown key 'colour'"),
])
def test_a_bad_rule_names_where_and_never_the_value(body: str, expected: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(f"connections:\n  - task_type: t\n    {body}\n", "c.yaml", environ=os.environ)
    assert expected in str(caught.value) and "c.yaml connections[0]" in str(caught.value)
    assert "plain-value" not in str(caught.value)


def test_the_request_keeps_its_own_values_and_the_file_fills_the_rest() -> None:
    rule = parse("connections:\n  - task_type: t\n    secrets: {a: {value: file-a, "
                 "inline: true}, b: {value: file-b, inline: true}}\n    configs: {c: file-c, "
                 "d: file-d}\n", "c.yaml").rules[0]
    secrets, configs = fill({"a": "request-a"}, {"d": "request-d", "b": "request-b"}, rule)
    assert secrets == {"a": "request-a"}  # b is the request's config: not also a secret
    assert configs == {"c": "file-c", "d": "request-d", "b": "request-b"}


def test_the_scope_envelope_is_signed() -> None:
    signer = MetaSigner(b"k" * 32)
    data = wrap_scope(signer, "databricks", 0, Scope("alpha", "prod"), b'{"run_id": "1"}')
    assert unwrap_scope(signer, "databricks", 0, data) == (Scope("alpha", "prod"),
                                                           b'{"run_id": "1"}')
    assert unwrap_scope(signer, "databricks", 0, b"{}") == (Scope(), b"{}")
    forged = data.replace(b"alpha", b"gamma")
    with pytest.raises(ResourceMetaError):
        unwrap_scope(signer, "databricks", 0, forged)
    with pytest.raises(ResourceMetaError):
        unwrap_scope(MetaSigner(b"o" * 32), "databricks", 0, data)


def kubernetes_secret(root: Path, values: dict[str, str], generation: int) -> None:
    """A mounted Secret as the kubelet writes it: files in a timestamped directory, a
    `..data` symlink swapped atomically, and each name a symlink through `..data`."""
    data = root / f"..{generation}"
    data.mkdir()
    for name, value in values.items():
        (data / name).write_text(value)
    link = root / "..data_tmp"
    link.symlink_to(data.name)
    os.replace(link, root / "..data")
    for name in values:
        if not (root / name).is_symlink():
            (root / name).symlink_to(f"..data/{name}")


def test_a_changed_secret_is_read_again_and_a_broken_file_keeps_the_last_good(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mount = tmp_path / "secret"
    mount.mkdir()
    kubernetes_secret(mount, {"token": "first-token"}, 1)
    path = tmp_path / "connections.yaml"
    path.write_text(f"connections:\n  - task_type: t\n    secrets: {{k: {{file: "
                    f"{mount / 'token'}}}}}\n")
    failures: list[int] = []
    source = ConnectionsSource(str(path), interval=0.0, on_failure=lambda: failures.append(1))
    assert source.lookup("t").secrets["k"] == "first-token"  # type: ignore[union-attr]
    kubernetes_secret(mount, {"token": "second-token"}, 2)
    assert source.lookup("t").secrets["k"] == "second-token"  # type: ignore[union-attr]
    with caplog.at_level(logging.ERROR, logger="connector_cli.connections"):
        path.write_text("connections:\n  - task_type: t\n    secrets: {k: inline-oops}\n")
        for _ in range(3):
            assert source.lookup("t").secrets["k"] == "second-token"  # type: ignore
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "keeping the last good version" in lines[0]
    assert failures == [1] and "inline-oops" not in lines[0]
    path.write_text("connections:\n  - task_type: t\n    configs: {k: now-a-config}\n")
    assert source.lookup("t").configs["k"] == "now-a-config"  # type: ignore[union-attr]


# -- the Databricks connector (flyteplugins-databricks) over the wire -------------------

databricks = pytest.importorskip("flyteplugins.databricks", reason="needs the flyte-test extra")

from tests.fixtures.fake_databricks import FakeDatabricks, databricks_template  # noqa: E402
from tests.helpers.flyte_support import start_ours, write_pki  # noqa: E402

ALPHA, BETA, ROTATED = "dapi-alpha-1111", "dapi-beta-2222", "dapi-alpha-3333"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def fake(pki: dict[str, Path]) -> Iterator[FakeDatabricks]:
    server = FakeDatabricks(pki["server"], pki["server_key"]).start()
    yield server
    server.stop()


def create_request(fake: FakeDatabricks, project: str) -> pb.CreateTaskRequest:
    from flyteidl2.core.tasks_pb2 import TaskTemplate
    from google.protobuf.json_format import ParseDict

    template = databricks_template(fake.instance)
    del template["custom"]["secrets"]  # nothing secret in the request at all
    request = pb.CreateTaskRequest(template=ParseDict(template, TaskTemplate()),
                                   output_prefix="/tmp/flyte-out")
    execution = request.task_execution_metadata.task_execution_id.node_execution_id
    execution.execution_id.project, execution.execution_id.domain = project, "development"
    return request


async def test_databricks_takes_its_token_from_the_connections_file(
        fake: FakeDatabricks, pki: dict[str, Path], tmp_path: Path) -> None:
    import grpc
    from flyteidl2.connector.service_pb2_grpc import AsyncConnectorServiceStub

    mount = tmp_path / "secret"
    mount.mkdir()
    kubernetes_secret(mount, {"alpha": ALPHA, "beta": BETA}, 1)
    connections = tmp_path / "connections.yaml"
    connections.write_text(json.dumps({"connections": [
        {"task_type": "databricks", "project": project,
         "secrets": {"databricks_token": {"file": str(mount / project)}}}
        for project in ("alpha", "beta")]}))
    fake.tokens = {ALPHA, BETA}
    daemon = start_ours(tmp_path, "--plugins", "databricks", "--connections", str(connections),
                        "--meta-key-file", str(write_secret(tmp_path / "key", "k" * 40)),
                        SSL_CERT_FILE=str(pki["ca"]))
    try:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            stub = AsyncConnectorServiceStub(channel)

            async def get(meta: bytes) -> Any:
                response = await stub.GetTask(pb.GetTaskRequest(
                    task_category=pb.TaskCategory(name="databricks"), resource_meta=meta,
                    output_prefix="/tmp/flyte-out"), timeout=30)
                return response.resource

            metas = {}
            for project in ("alpha", "beta"):
                created = await stub.CreateTask(create_request(fake, project), timeout=30)
                metas[project] = created.resource_meta
            first = await get(metas["alpha"])
            await get(metas["beta"])
            kubernetes_secret(mount, {"alpha": ROTATED, "beta": BETA}, 2)
            fake.tokens = {ROTATED, BETA}
            await asyncio.sleep(1.2)  # the daemon looks for changed files at most once a second
            rotated = await get(metas["alpha"])
            forged = metas["alpha"].replace(b"alpha", b"beta!")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await get(forged)
    finally:
        log = daemon.stop()
    tokens = {path: [] for path, _ in fake.used}  # type: dict[str, list[str]]
    for path, token in fake.used:
        tokens[path].append(token)
    assert tokens["/api/2.1/jobs/runs/submit"] == [ALPHA, BETA]
    assert tokens["/api/2.1/jobs/runs/get"] == [ALPHA, BETA, ROTATED]
    assert first.phase == TaskExecution.QUEUED and rotated.phase == TaskExecution.RUNNING
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fake.bad_tokens == 0
    for token in (ALPHA, BETA, ROTATED):
        assert token not in log


# -- masking and the lookup for services without a connection ---------------------------



def _echo_registry(registry: Any) -> Any:
    from dataclasses import dataclass

    from connector_cli import AsyncConnector, Resource
    from connector_cli import ResourceMeta as Meta

    @dataclass
    class Handle(Meta):
        job: str

    class Echo(AsyncConnector):
        """Says what it was given: the daemon must mask it."""

        name = "Echo"
        task_type_name = "echo"
        metadata_type = Handle

        async def create(self, task_template: Any, output_prefix: str, inputs: Any = None,
                         task_execution_metadata: Any = None, **kwargs: Any) -> Handle:
            logging.getLogger("echo").warning("creating with %s", kwargs)
            return Handle(job="j")

        async def get(self, resource_meta: Handle, **kwargs: Any) -> Resource:
            if kwargs.get("fail"):
                raise RuntimeError(f"cannot log in with {kwargs['api_key']}")
            return Resource(phase=TaskExecution.RUNNING, message=f"using {kwargs}")

        async def delete(self, resource_meta: Handle, **kwargs: Any) -> None:
            return None

    registry.register(Echo())
    return registry


async def test_values_from_the_file_are_masked_like_the_requests_secrets(
        registry: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from connector_cli.client import connection
    from connector_cli.errors import RemoteError
    from connector_cli.run.task_files import make_template
    from connector_cli.testing import serve_in_background

    key = write_secret(tmp_path / "api-key", SECRET)
    path = tmp_path / "connections.yaml"
    path.write_text(f"connections:\n  - task_type: echo\n    secrets: {{api_key: {{file: "
                    f"{key}}}}}\n    configs: {{region: eu}}\n")
    _echo_registry(registry)
    from connector_cli.masking import MaskingFilter

    caplog.handler.addFilter(MaskingFilter())  # as the daemon's own log handler has
    with caplog.at_level(logging.DEBUG):
        async with serve_in_background(registry, connections=str(path)) as daemon:
            meta = await daemon.client.create(make_template("echo"), "/tmp/out")
            running = await daemon.client.get(("echo", 0), meta)
            with pytest.raises(RemoteError) as failed:
                await daemon.client.get(("echo", 0), meta,
                                        connection=connection(configs={"fail": "yes"}))
            found = daemon.server._services[0].dispatch.connection("echo")  # type: ignore
            assert found is not None and found.secrets == {"api_key": SECRET}
            assert daemon.server._services[0].dispatch.connection("other") is None  # type: ignore
    assert "'region': 'eu'" in running.message and "'api_key': '****'" in running.message
    assert SECRET not in str(failed.value) and "****" in str(failed.value)
    assert SECRET not in caplog.text and "creating with" in caplog.text


def test_serve_refuses_to_start_on_a_broken_file_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO, cli_env

    path = tmp_path / "connections.yaml"
    path.write_text("connections:\n  - task_type: t\n    secrets: {k: hunter2-inline}\n")
    done = subprocess.run(
        [sys.executable, "-m", "connector_cli", "serve", "--host", "127.0.0.1", "--port", "0",
         "--metrics-port", "0", "--plugins", "shell", "--connections", str(path)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env=cli_env(FLYTE_CONNECTOR_STATE_DIR=str(tmp_path / "state")))
    errors = [line for line in done.stderr.splitlines() if "Error" in line]
    assert done.returncode == 1, done.stderr
    assert len(errors) == 1 and "connections[0].secrets.k" in errors[0], done.stderr
    assert "hunter2" not in done.stderr and "Traceback" not in done.stderr
