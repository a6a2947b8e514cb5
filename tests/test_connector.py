"""AsyncConnector, Resource, phase helpers and how connector methods are called."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import pytest
from flyteidl2.core.execution_pb2 import TaskExecution

from connector_cli import (
    AsyncConnector,
    Resource,
    ResourceMeta,
    UnknownStateError,
    convert_to_flyte_phase,
    is_terminal_phase,
)
from connector_cli.sdk.connector import call_method, implements, method_kind, phase_name


@pytest.mark.parametrize(
    "state, phase",
    [
        ("pending", TaskExecution.INITIALIZING),
        ("QUEUED", TaskExecution.QUEUED),
        ("submitted", TaskExecution.QUEUED),
        ("waiting for resources", TaskExecution.WAITING_FOR_RESOURCES),
        ("running", TaskExecution.RUNNING),
        ("In-Progress", TaskExecution.RUNNING),
        ("succeeded", TaskExecution.SUCCEEDED),
        ("DONE", TaskExecution.SUCCEEDED),
        ("completed", TaskExecution.SUCCEEDED),
        ("failed", TaskExecution.FAILED),
        ("timeout", TaskExecution.FAILED),
        ("TIMED_OUT", TaskExecution.FAILED),
        ("internal_error", TaskExecution.FAILED),
        ("cancelled", TaskExecution.ABORTED),
        ("canceled", TaskExecution.ABORTED),
        ("retryable_failed", TaskExecution.RETRYABLE_FAILED),
    ],
)
def test_external_states_map_to_phases(state: str, phase: int) -> None:
    assert convert_to_flyte_phase(state) == phase


def test_unknown_state_is_an_error_listing_known_states() -> None:
    with pytest.raises(UnknownStateError, match="unknown job state 'melted'; known states: .*running"):
        convert_to_flyte_phase("melted")


def test_terminal_phases() -> None:
    terminal = {p for p in TaskExecution.Phase.values() if is_terminal_phase(p)}
    assert terminal == {
        TaskExecution.SUCCEEDED,
        TaskExecution.FAILED,
        TaskExecution.RETRYABLE_FAILED,
        TaskExecution.ABORTED,
    }
    assert phase_name(TaskExecution.RUNNING) == "RUNNING"


def test_resource_refuses_undefined_and_accepts_state_names() -> None:
    with pytest.raises(ValueError, match="UNDEFINED"):
        Resource(phase=TaskExecution.UNDEFINED)
    with pytest.raises(ValueError, match="UNDEFINED"):
        Resource(phase=42)
    assert Resource(phase="done").phase == TaskExecution.SUCCEEDED
    r = Resource(TaskExecution.RUNNING, "half way", [], {"n": 1}, {"k": "v"})
    assert (r.message, r.outputs, r.custom_info) == ("half way", {"n": 1}, {"k": "v"})


class Mixed(AsyncConnector):
    task_type_name = "mixed"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.threads: list[int] = []

    def create(self, task_template: Any, output_prefix: str, inputs: Any = None, **kw: Any) -> ResourceMeta:
        self.threads.append(threading.get_ident())
        assert self.release.wait(10), "the event loop was blocked by a plain def method"
        return ResourceMeta()

    async def get(self, resource_meta: ResourceMeta, **kw: Any) -> Resource:
        return Resource(phase=TaskExecution.RUNNING, message=kw.get("token", ""))

    async def delete(self, resource_meta: ResourceMeta, **kw: Any) -> None:
        return None

    async def get_logs(self, resource_meta: ResourceMeta, **kw: Any):  # type: ignore[override]
        yield "page-1"
        yield "page-2"


class Minimal(AsyncConnector):
    task_type_name = "minimal"

    async def create(self, *a: Any, **kw: Any) -> ResourceMeta:
        return ResourceMeta()

    async def get(self, resource_meta: ResourceMeta, **kw: Any) -> Resource:
        return Resource(phase=TaskExecution.SUCCEEDED)

    async def delete(self, resource_meta: ResourceMeta, **kw: Any) -> None:
        return None


def test_method_kinds_and_optional_methods_are_detected() -> None:
    mixed, minimal = Mixed(), Minimal()
    assert method_kind(mixed, "create") == "sync"
    assert method_kind(mixed, "get") == "async"
    assert method_kind(mixed, "get_logs") == "asyncgen"
    assert not implements(mixed, "get_metrics")
    assert not implements(minimal, "get_logs") and not implements(minimal, "get_metrics")
    assert minimal.name == "Minimal"
    assert minimal.task_category == ("minimal", 0)


def test_abstract_methods_are_required() -> None:
    class Incomplete(AsyncConnector):
        task_type_name = "x"

        async def create(self, *a: Any, **kw: Any) -> ResourceMeta:
            return ResourceMeta()

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()  # type: ignore[abstract]


async def test_plain_def_runs_on_a_worker_thread_without_blocking_the_loop() -> None:
    connector = Mixed()
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var")
    var.set("request-1")
    seen: list[str] = []
    original = connector.create

    def create(*args: Any, **kwargs: Any) -> ResourceMeta:
        seen.append(var.get())
        return original(*args, **kwargs)

    connector.create = create  # type: ignore[method-assign]
    call = asyncio.ensure_future(call_method(connector, "create", None, "prefix"))
    await asyncio.sleep(0.05)
    assert not call.done()
    connector.release.set()
    assert await asyncio.wait_for(call, 10) == ResourceMeta()
    assert connector.threads and connector.threads[0] != threading.get_ident()
    assert seen == ["request-1"]


async def test_async_methods_and_generators_are_called_on_the_loop() -> None:
    connector = Mixed()
    resource = await call_method(connector, "get", ResourceMeta(), token="t-1")
    assert resource.message == "t-1"
    pages = await call_method(connector, "get_logs", ResourceMeta())
    assert [page async for page in pages] == ["page-1", "page-2"]
    with pytest.raises(NotImplementedError):
        await call_method(connector, "get_metrics", ResourceMeta())
