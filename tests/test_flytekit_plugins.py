"""Unmodified flytekitplugins-* connectors against real or fake services, through both APIs.

`make test` installs flytekitplugins-openai and -slurm (1.16.31) into .venv/flytekit-plugins,
a directory only these tests put on sys.path, and their dependencies into the venv.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("flytekit.extend.backend.base_connector", reason="needs the flytekit extra")
pytest.importorskip("openai", reason="needs the flytekit-test extra")

from flyteidl.admin import agent_pb2 as v1
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.core.execution_pb2 import TaskExecution

from connector_cli.testing import serve_in_background
from tests.fixtures.fake_openai import FakeOpenAI
from tests.helpers.flyte1_support import V1Stubs, primitives, v1_inputs, v1_template
from tests.helpers.flyte_support import Stubs

KIT_PLUGINS = Path(sys.prefix) / "flytekit-plugins"
if not (KIT_PLUGINS / "flytekitplugins" / "openai").is_dir():
    pytest.skip("needs flytekitplugins-* in .venv/flytekit-plugins (make install-flyte)",
                allow_module_level=True)
API_KEY = "sk-test-0penai-s3cret"
ORG = "org-flyte"


@pytest.fixture
def openai_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """The fake OpenAI API; the plugin's key through flytekit's secrets lookup and the
    client's base URL from the environment, as a deployment would set them."""
    monkeypatch.syspath_prepend(str(KIT_PLUGINS))
    fake = FakeOpenAI().start()
    monkeypatch.setenv("_FSEC_FLYTE_OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    try:
        yield fake
    finally:
        fake.stop()


def batch_template() -> object:
    return v1_template("openai-batch", inputs={"input_file_id": "str"},
                       custom={"openai_organization": ORG, "config": {}})


async def test_openai_batch_and_chatgpt_run_unmodified_through_both_apis(
        openai_api: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    chat = v1_template("chatgpt", inputs={"message": "str"}, outputs={"o0": "str"},
                       custom={"openai_organization": ORG,
                               "chatgpt_config": {"model": "gpt-4o-mini"}})
    async with serve_in_background(plugins=["flytekitplugins-openai"]) as daemon:
        async with V1Stubs(daemon.address) as old, Stubs(daemon.address) as new:
            agents = await old.agents()
            meta = await old.create(batch_template(), v1_inputs(input_file_id="file-in"))
            phases = [await old.get("openai-batch", meta) for _ in range(2)]
            bad = await old.create(batch_template(), v1_inputs(input_file_id="file-bad"))
            bad_phases = [await old.get("openai-batch", bad) for _ in range(2)]
            v2_meta = await new.create(_v2(batch_template()), _v2_inputs(input_file_id="f2"))
            await new.delete("openai-batch", v2_meta)
            answer = await old.execute_sync(chat, v1_inputs(message="hello flyte"))
            v2_chat = await new.create(_v2(chat), _v2_inputs(message="two"))
            v2_answer = await new.get("chatgpt", v2_chat)
    assert agents["OpenAI Batch Endpoint Connector"] == ([("openai-batch", 0)], False)
    assert agents["ChatGPT Connector"] == ([("chatgpt", 0)], True)
    assert [p.phase for p in phases] == [TaskExecution.RUNNING, TaskExecution.SUCCEEDED]
    assert list(phases[1].outputs.literals) == ["result"]
    assert [p.phase for p in bad_phases] == [TaskExecution.RUNNING, TaskExecution.FAILED]
    assert bad_phases[1].message == "line 1 is not JSON"
    assert openai_api.cancelled == ["batch_3"]
    assert (answer.phase, primitives(answer.outputs)) == (
        TaskExecution.SUCCEEDED, {"o0": "etylf olleh"})
    assert v2_answer.phase == TaskExecution.SUCCEEDED
    assert v2_answer.outputs.literals[0].value.scalar.primitive.string_value == "owt"
    assert set(openai_api.authorizations) == {f"Bearer {API_KEY}"}
    assert API_KEY not in caplog.text


def _v2(template: object) -> object:
    return pb.CreateTaskRequest.FromString(
        v1.CreateTaskRequest(template=template).SerializeToString()).template


def _v2_inputs(**values: object) -> object:
    return pb.CreateTaskRequest.FromString(
        v1.CreateTaskRequest(inputs=v1_inputs(**values)).SerializeToString()).inputs
