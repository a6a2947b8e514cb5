"""Issue 28, item 2: request bodies that never finish must not grow the daemon without bound.

A raw HTTP/2 client (h2) opens many CreateTask streams, announces 15 MB for each and
sends all but the last byte. Before the fix grpc held every one of them (128 streams:
1.9 GiB, 1.6 GiB still held after the client left).
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.core.tasks_pb2 import TaskTemplate

from connector_cli.daemon.bodies import BODY_SECONDS
from tests.helpers.daemon_process import Daemon
from tests.helpers.h2_flood import Unfinished, flood
from tests.helpers.pressure import figure, health_while, peak_rss_mib, rss_mib
from tests.helpers.raw_grpc import raw_call

pytestmark = pytest.mark.timeout(180)
HEALTH = "/grpc.health.v1.Health/Check"


def big_create(size: int) -> bytes:
    request = pb.CreateTaskRequest(template=TaskTemplate(type="slow"))
    request.inputs.literals.add(name="pad").value.scalar.primitive.string_value = "a" * size
    return request.SerializeToString()


async def test_unfinished_bodies_are_bounded_timed_out_and_given_back() -> None:
    daemon = Daemon()
    address = daemon.wait_ready()
    pid = daemon.proc.pid
    try:
        conns = [Unfinished(address, 16, 15_000_000) for _ in range(8)]
        slowest, ended = await health_while(address, lambda: flood(conns, BODY_SECONDS + 4))
        peak = peak_rss_mib(pid)
        for conn in conns:
            conn.close()
        await asyncio.sleep(4)
        after = rss_mib(pid)
        code, details = await raw_call(address, "CreateTask", big_create(14 << 20), timeout=30)
    finally:
        daemon.proc.terminate()
        _, log = daemon.finish()
    figure(f"128 unfinished 15 MB bodies: slowest health {slowest:.3f}s, peak RSS "
           f"{peak:.0f} MiB, {after:.0f} MiB 4 s after the client left; {ended} streams ended")
    assert code == grpc.StatusCode.OK, details
    assert slowest < 1.0, f"health waited {slowest:.2f}s"
    assert peak < 512, f"peak RSS {peak:.0f} MiB"
    assert ended > 16, "no unfinished body was timed out or refused"
    assert after < 256, f"{after:.0f} MiB still held after the client left"
    assert "no request body slot" in log


async def test_a_flood_of_unfinished_health_calls_does_not_delay_a_probe() -> None:
    """128 health calls announcing 15 MB and stopping one byte short, each replaced as soon
    as the daemon ends it: a probe took 5 s while they held health's 8 slots; now a probe
    takes the slot of the oldest unfinished one."""
    daemon = Daemon()
    address = daemon.wait_ready()
    pid = daemon.proc.pid
    try:
        conns = [Unfinished(address, 16, 15_000_000, path=HEALTH, reopen=True)
                 for _ in range(8)]
        slowest, ended = await health_while(address, lambda: flood(conns, 6))
        peak = peak_rss_mib(pid)
        for conn in conns:
            conn.close()
    finally:
        daemon.proc.terminate()
        daemon.finish()
    figure(f"128 unfinished 15 MB health calls, reopened when ended: slowest probe "
           f"{slowest:.3f}s, peak RSS {peak:.0f} MiB, {ended} flood calls ended")
    assert slowest < 1.0, f"a probe waited {slowest:.2f}s"
    assert ended > 16, "no unfinished health call was ended"
    assert peak < 512, f"peak RSS {peak:.0f} MiB"


async def test_large_bodies_that_finish_still_work_side_by_side() -> None:
    daemon = Daemon()
    address = daemon.wait_ready()
    try:
        body = big_create(14 << 20)
        results = await asyncio.gather(
            *[raw_call(address, "CreateTask", body, timeout=60) for _ in range(4)])
        small = await asyncio.gather(
            *[raw_call(address, "GetTask", b"", timeout=10) for _ in range(200)])
    finally:
        daemon.proc.terminate()
        daemon.finish()
    assert [c for c, _ in results] == [grpc.StatusCode.OK] * 4, results
    assert {c for c, _ in small} == {grpc.StatusCode.NOT_FOUND}, small[:3]


def collection_create(count: int) -> bytes:
    """A CreateTask whose input is a list of `count` integers: ~10 bytes each on the wire,
    but over a hundred once parsed and converted."""
    request = pb.CreateTaskRequest(template=TaskTemplate(type="slow"))
    coll = request.inputs.literals.add(name="pad").value.collection
    for i in range(count):
        coll.literals.add().scalar.primitive.integer = i
    return request.SerializeToString()


async def test_large_inputs_within_the_budget_neither_block_health_nor_pile_up() -> None:
    """Item 3: 4 x 13 MiB of literal collections held health for 4 s (converted on the
    event loop) and parsing them side by side costs ~200 MiB each."""
    body = collection_create(1_400_000)
    daemon = Daemon()
    address = daemon.wait_ready()
    try:
        async def load() -> list[tuple[grpc.StatusCode, str]]:
            return await asyncio.gather(
                *[raw_call(address, "CreateTask", body, timeout=60) for _ in range(4)])

        slowest, results = await health_while(address, load)
        peak = peak_rss_mib(daemon.proc.pid)
    finally:
        daemon.proc.terminate()
        daemon.finish()
    figure(f"4 x {len(body) >> 20} MiB literal lists: slowest health {slowest:.3f}s, "
           f"peak RSS {peak:.0f} MiB")
    assert [c for c, _ in results] == [grpc.StatusCode.OK] * 4  # type: ignore[union-attr]
    assert slowest < 1.0, f"health waited {slowest:.2f}s"
    assert peak < 512, f"peak RSS {peak:.0f} MiB"


async def test_a_call_that_sends_no_request_message_is_invalid_argument() -> None:
    """Methods are registered request-streaming so their bodies are read within a slot; a
    client that half-closes without a message gets a status naming that, on every shape."""
    daemon = Daemon()
    address = daemon.wait_ready()
    results = {}
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            for method, shape in (("CreateTask", channel.stream_unary),
                                  ("GetTaskLogs", channel.stream_stream)):
                call = shape(f"/flyteidl2.connector.AsyncConnectorService/{method}")(iter(()))
                try:
                    if method == "GetTaskLogs":
                        async for _ in call:
                            pass
                    else:
                        await call
                except grpc.aio.AioRpcError as exc:
                    results[method] = (exc.code(), exc.details())
            health = await channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5)
    finally:
        daemon.proc.terminate()
        daemon.finish()
    assert results == dict.fromkeys(("CreateTask", "GetTaskLogs"), (
        grpc.StatusCode.INVALID_ARGUMENT, "the call carried no request message")), results
    assert health == b"\x08\x01"  # SERVING
