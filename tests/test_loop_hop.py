"""The hop to a connector's own loop (`connector_cli.sdk.loops.LoopThread.run`): results,
exceptions, cancellation and context variables cross it as they would on one loop, and
calls queued together (one wake-up for a batch) all settle."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import time
import warnings
from typing import Any

import pytest

from connector_cli.sdk.loops import LoopThread

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


@pytest.fixture(scope="module")
def hop() -> LoopThread:
    return LoopThread("connector-loop-test-hop")


async def test_many_concurrent_calls_each_get_their_own_result(hop: LoopThread) -> None:
    threads: set[str] = set()

    async def double(n: int) -> int:
        threads.add(threading.current_thread().name)
        await asyncio.sleep(0 if n % 3 else 0.001)
        return 2 * n

    results = await asyncio.gather(*(hop.run(double(n)) for n in range(500)))
    assert results == [2 * n for n in range(500)]
    assert threads == {"connector-loop-test-hop"}


async def test_a_call_is_answered_when_it_ends_not_after_the_blocking_calls_behind_it(
        hop: LoopThread) -> None:
    """A connector that blocks its loop runs queued calls one after another; each caller
    still hears back as soon as its own call ends (the first after 0.2 s, not after 1.6)."""
    starts: list[float] = []

    async def blocking(seconds: float) -> float:
        starts.append(time.perf_counter())
        time.sleep(seconds)
        return seconds

    held = asyncio.ensure_future(hop.run(blocking(0.3)))  # the batch below queues behind it
    await asyncio.sleep(0.05)
    calls = [asyncio.ensure_future(hop.run(blocking(0.2))) for _ in range(8)]
    await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
    first_answer = time.perf_counter()
    assert await asyncio.gather(held, *calls) == [0.3] + [0.2] * 8
    assert first_answer < starts[-1], "the first answer waited for the last call to start"


async def test_a_call_cancelled_before_it_started_leaves_no_unawaited_coroutine(
        hop: LoopThread) -> None:
    async def blocking() -> None:
        time.sleep(0.3)

    async def queued() -> str:
        return "never"

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        held = asyncio.ensure_future(hop.run(blocking()))
        await asyncio.sleep(0.05)
        call = asyncio.ensure_future(hop.run(queued()))
        await asyncio.sleep(0.05)  # started on the held loop, its first step not yet run
        call.cancel()
        await held
        with pytest.raises(asyncio.CancelledError):
            await call
        await hop.run(asyncio.sleep(0))  # the cancellation has run there
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]


async def test_an_exception_arrives_as_raised(hop: LoopThread) -> None:
    class Boom(Exception):
        pass

    async def fail() -> None:
        raise Boom("no")

    with pytest.raises(Boom, match="no"):
        await hop.run(fail())
    assert await hop.run(asyncio.sleep(0, result="still serving")) == "still serving"


async def test_cancelling_the_caller_cancels_the_coroutine_there(hop: LoopThread) -> None:
    started, seen = threading.Event(), threading.Event()

    async def wait_forever() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.set()
            raise

    call = asyncio.ensure_future(hop.run(wait_forever()))
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await asyncio.get_running_loop().run_in_executor(None, seen.wait, 5)


async def test_a_coroutine_cancelled_there_cancels_the_caller(hop: LoopThread) -> None:
    async def cancel_itself() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await hop.run(cancel_itself())


async def test_the_callers_context_variables_are_seen_there(hop: LoopThread) -> None:
    async def read() -> str:
        return REQUEST_ID.get()

    async def as_request(name: str) -> str:
        REQUEST_ID.set(name)
        return await hop.run(read())

    assert await asyncio.gather(as_request("a"), as_request("b")) == ["a", "b"]
    assert REQUEST_ID.get() == "-"


def test_calls_from_several_caller_loops_in_turn(hop: LoopThread) -> None:
    """A caller's loop that closed (one per test run, say) leaves the hop working."""
    async def call(n: int) -> Any:
        return await hop.run(asyncio.sleep(0, result=n))

    for n in range(3):
        assert asyncio.run(call(n)) == n


@pytest.mark.parametrize("on_uvloop", [False, True])
def test_the_connectors_loop_is_of_the_kind_the_daemon_runs_on(on_uvloop: bool) -> None:
    """uvloop's when the caller runs on uvloop (the daemon by default), else asyncio's."""
    if on_uvloop:
        uvloop = pytest.importorskip("uvloop")

    hops: list[LoopThread] = []

    async def kind() -> str:
        hops.append(LoopThread("connector-loop-kind"))
        return await hops[0].run(_running_loop_module())

    module = uvloop.run(kind()) if on_uvloop else asyncio.run(kind())
    assert module.startswith("uvloop") == on_uvloop
    hops[0].loop.call_soon_threadsafe(hops[0].loop.stop)
    hops[0].thread.join(5)
    hops[0].loop.close()


async def _running_loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__
