"""connector_cli.masking: the secrets a request carries are bounded, and masked in log
records and GetTask's text while that request is served (and only in its own task)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.core.execution_pb2 import TaskLog

from connector_cli.errors import UsageError
from connector_cli.masking import (
    MAX_CONFIGS,
    MAX_SECRET_BYTES,
    MAX_SECRETS,
    MaskingFilter,
    activate,
    check_configs,
    check_secrets,
    current,
    mask_resource,
)

SECRET = "hunter2-but-longer"


def test_bounds_refuse_without_echoing_values() -> None:
    with pytest.raises(UsageError, match=f"at most {MAX_SECRETS}"):
        check_secrets({f"k{i}": "v" for i in range(MAX_SECRETS + 1)})
    with pytest.raises(UsageError, match=f"at most {MAX_SECRET_BYTES} are accepted") as big:
        check_secrets({"k": SECRET * (MAX_SECRET_BYTES // len(SECRET) + 1)})
    assert SECRET not in str(big.value)
    with pytest.raises(UsageError, match=f"at most {MAX_CONFIGS}"):
        check_configs({f"c{i}": "v" for i in range(MAX_CONFIGS + 1)})
    check_secrets({"k": SECRET})
    check_configs({"c": "v"})


async def test_a_masker_is_current_only_in_the_task_that_activated_it() -> None:
    async def serve(secret: str) -> bool:
        activate({"token": secret})
        await asyncio.sleep(0)
        masker = current()
        return masker is not None and secret not in masker.text(f"x {secret} y")

    assert await asyncio.gather(serve(SECRET), serve("other-secret-value")) == [True, True]
    assert current() is None  # each RPC is its own task: nothing leaks to the caller


def test_the_filter_masks_message_arguments_traceback_and_stack() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "login with %s", (SECRET,),
                               None)
    try:
        raise RuntimeError(f"refused {SECRET}")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    record.stack_info = f"stack {SECRET}"

    async def within_request() -> logging.LogRecord:
        activate({"api_key": SECRET})
        MaskingFilter().filter(record)
        return record

    masked = asyncio.run(within_request())
    text = logging.Formatter().format(masked)
    assert SECRET not in text and "login with" in text and "RuntimeError" in text
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "no request %s", (SECRET,), None)
    assert MaskingFilter().filter(plain) and plain.getMessage().endswith(SECRET)


def test_get_task_text_fields_are_masked() -> None:
    resource = pb.Resource(message=f"failed: {SECRET}", log_links=[
        TaskLog(name=f"log {SECRET}", uri=f"https://x/?t={SECRET}")])
    resource.custom_info.update({"nested": {"key": SECRET}, "ok": 1})

    async def within_request() -> None:
        mask_resource(resource, activate({"api_key": SECRET}))

    asyncio.run(within_request())
    assert SECRET not in str(resource)
    assert resource.custom_info["ok"] == 1
