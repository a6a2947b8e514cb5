"""`Slots`, the body-read slots of `daemon.bodies`: taken, handed over, refused, given back.

The context stands in for grpc's servicer context: `read` returns when the test lets the
body "arrive", `abort` raises as grpc's does. The daemon-level floods are in
tests/test_hostile_streams.py."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from connector_cli.daemon import bodies
from connector_cli.daemon.bodies import Slots


class Aborted(Exception):
    pass


class Body:
    """A call whose body arrives when `arrive` is called."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.aborted: tuple[Any, str] | None = None

    async def read(self) -> bytes:
        await self.arrived.wait()
        return b"body"

    async def abort(self, code: Any, detail: str) -> None:
        self.aborted = (code, detail)
        raise Aborted(detail)


def slots(count: int) -> Slots:
    return Slots(count, seconds=30.0, on_timeout=lambda: None)


async def test_a_freed_slot_goes_to_the_oldest_waiting_call() -> None:
    gate = slots(1)
    first, second, third = Body(), Body(), Body()
    reads = [asyncio.ensure_future(gate.read(body)) for body in (first, second, third)]
    await asyncio.sleep(0.01)
    assert gate.free == 0 and gate.waiting == 2
    third.arrived.set()  # its body is there, but it holds no slot yet
    await asyncio.sleep(0.01)
    assert not reads[2].done()
    first.arrived.set()
    assert await reads[0] == b"body"
    await asyncio.sleep(0.01)
    assert not reads[2].done(), "the slot went to a newer call than the oldest waiting one"
    second.arrived.set()
    assert await reads[1] == b"body"
    assert await reads[2] == b"body"
    assert gate.free == 1 and gate.waiting == 0 and not gate.holders


async def test_a_call_that_finds_no_slot_in_time_is_resource_exhausted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bodies, "WAIT_SECONDS", 0.05)
    gate = slots(1)
    holder, refused = Body(), Body()
    held = asyncio.ensure_future(gate.read(holder))
    await asyncio.sleep(0.01)
    with pytest.raises(Aborted):
        await gate.read(refused)
    assert refused.aborted is not None
    assert refused.aborted[0] is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert gate.refused == 1
    holder.arrived.set()
    await held
    assert gate.free == 1, "a refused call's wait left the count wrong"


async def test_a_cancelled_waiting_call_takes_no_slot_with_it() -> None:
    gate = slots(1)
    holder, leaving, later = Body(), Body(), Body()
    held = asyncio.ensure_future(gate.read(holder))
    await asyncio.sleep(0.01)
    waiting = asyncio.ensure_future(gate.read(leaving))
    await asyncio.sleep(0.01)
    waiting.cancel()
    holder.arrived.set()  # its slot is given back in the same step as the cancellation
    await held
    with pytest.raises(asyncio.CancelledError):
        await waiting
    later.arrived.set()
    assert await gate.read(later) == b"body"
    assert gate.free == 1 and not gate.holders


async def test_at_shutdown_waiting_calls_read_without_a_slot() -> None:
    gate = slots(1)
    holder, waiter = Body(), Body()
    held = asyncio.ensure_future(gate.read(holder))
    await asyncio.sleep(0.01)
    waiting = asyncio.ensure_future(gate.read(waiter))
    await asyncio.sleep(0.01)
    gate.open_all()
    waiter.arrived.set()
    assert await waiting == b"body"
    holder.arrived.set()
    await held
    assert gate.free == 1
