"""`serve --sign-foreign-metas`: the resource_meta of Flyte SDK connectors signed like our
own host-local connectors' metas, forged ones refused (flyteplugins-slurm's GetTaskLogs
would otherwise read any path on the login node); off, the bytes are the Flyte SDK
server's; `--accept-unsigned-metas-until` lets tasks started before the switch finish."""

from __future__ import annotations

import json
import time

import grpc
import pytest

pytest.importorskip("flyte.connectors", reason="needs the flyte extra")
pytest.importorskip("flyteplugins.slurm", reason="needs the flyte-test extra")

from connector_cli.testing import make_inputs, make_template, serve_in_background
from tests.fixtures.connectors.flyte_style import SECRET, CounterMeta
from tests.helpers.flyte_support import Stubs

FLYTE_STYLE = "tests.fixtures.connectors.flyte_style"
FORGED = json.dumps({
    "job_id": "1", "job_name": "x", "host": "127.0.0.1", "username": "root", "port": 1,
    "stdout_path": "/etc/shadow", "stderr_path": "/root/.ssh/id_rsa",
    "skip_host_key_verification": True,
}).encode()


def _iso(moment: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(moment, timezone.utc).isoformat()


def counter_request() -> tuple[object, object]:
    template = make_template("flyte_counter", inputs={"n": int, "label": str},
                             outputs={"total": int, "label": str, "ratio": float, "ok": bool})
    return template, make_inputs(template, {"n": 3, "label": "abc"})


async def test_a_forged_slurm_meta_is_refused_when_signing_is_on() -> None:
    async with serve_in_background(plugins=["slurm"], sign_foreign_metas=True) as daemon:
        async with Stubs(daemon.address) as stubs:
            for call in (stubs.logs("slurm", FORGED), stubs.get("slurm", FORGED)):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await call
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "not a signed handle" in (refused.value.details() or "")


async def test_off_the_forged_meta_reaches_the_connector() -> None:
    async with serve_in_background(plugins=["slurm"]) as daemon:
        async with Stubs(daemon.address) as stubs:
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await stubs.logs("slurm", FORGED)
    assert failed.value.code() != grpc.StatusCode.INVALID_ARGUMENT  # it tried to connect


async def test_signed_metas_round_trip_and_off_keeps_the_flyte_sdk_bytes() -> None:
    template, inputs = counter_request()
    plain = CounterMeta(job_id="job-3-abc-none", n=3, label="abc").encode()
    async with serve_in_background(modules=[FLYTE_STYLE]) as daemon:
        async with Stubs(daemon.address) as stubs:
            unsigned = await stubs.create(template, inputs, secrets={"api_key": SECRET})
    assert unsigned == plain
    async with serve_in_background(modules=[FLYTE_STYLE], sign_foreign_metas=True) as daemon:
        async with Stubs(daemon.address) as stubs:
            signed = await stubs.create(template, inputs, secrets={"api_key": SECRET})
            assert (await stubs.get("flyte_counter", signed)).phase > 0
            with pytest.raises(grpc.aio.AioRpcError) as unsigned_refused:
                await stubs.get("flyte_counter", plain)
    assert signed.startswith(b"fcm1.") and signed.endswith(plain)
    assert unsigned_refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_migration_window_accepts_unsigned_metas_until_it_closes() -> None:
    template, inputs = counter_request()
    plain = CounterMeta(job_id="job-3-abc-none", n=3, label="abc").encode()
    async with serve_in_background(modules=[FLYTE_STYLE], sign_foreign_metas=True,
                                   accept_unsigned_metas_until=_iso(time.time() + 3600)) as daemon:
        async with Stubs(daemon.address) as stubs:
            await stubs.create(template, inputs, secrets={"api_key": SECRET})
            assert (await stubs.get("flyte_counter", plain)).phase > 0
            forged = b"fcm1.00000000." + b"A" * 43 + b"." + plain
            with pytest.raises(grpc.aio.AioRpcError) as bad_signature:
                await stubs.get("flyte_counter", forged)
    assert bad_signature.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    async with serve_in_background(modules=[FLYTE_STYLE], sign_foreign_metas=True,
                                   accept_unsigned_metas_until=_iso(time.time() - 1)) as daemon:
        async with Stubs(daemon.address) as stubs:
            with pytest.raises(grpc.aio.AioRpcError) as closed:
                await stubs.get("flyte_counter", plain)
    assert closed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
