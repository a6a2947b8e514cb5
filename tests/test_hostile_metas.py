"""Metas with impossible paths are INVALID_ARGUMENT from both bundled connectors, for every
operation, with a short message that does not repeat the path. The metas are signed with
the daemon's own key, so they get past the signature check to the connectors' own."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import grpc
import pytest
from flyteidl2.connector import connector_pb2 as pb

from connector_cli.signing import MetaSigner
from connector_cli.testing import serve_in_background
from tests.helpers.raw_grpc import raw_call

SHELL = {"pid": 4_194_305, "start_ticks": 5, "boot_id": "forged", "job_dir": "/nonexistent"}
SQL = {"job_id": "j", "job_dir": "/nonexistent", "job_uri": "file:///nonexistent",
       "engine": "sqlite", "format": "csv", "pid": 4_194_305, "start_ticks": 5}
PATHS = {"nul": "/tmp/a\x00b", "relative": "relative/dir", "huge": "/" + "a" * 300_000,
         "long name": "/tmp/" + "b" * 300, "dot-dot": "/tmp/../etc"}
OPERATIONS = {"GetTask": pb.GetTaskRequest, "DeleteTask": pb.DeleteTaskRequest,
              "GetTaskLogs": pb.GetTaskLogsRequest, "GetTaskMetrics": pb.GetTaskMetricsRequest}


@pytest.mark.parametrize("connector,base", [("shell", SHELL), ("sql", SQL)])
async def test_impossible_job_paths_are_invalid_argument(
    connector: str, base: dict, tmp_path: Path
) -> None:
    key = secrets.token_hex(32).encode()
    (tmp_path / "key").write_bytes(key)
    signer = MetaSigner(key)
    async with serve_in_background(plugins=["shell", "sql"],
                                   meta_key_file=str(tmp_path / "key")) as daemon:
        for what, path in PATHS.items():
            meta = signer.sign(connector, 0, json.dumps(dict(base, job_dir=path)).encode())
            for method, cls in OPERATIONS.items():
                body = cls(task_category=pb.TaskCategory(name=connector), resource_meta=meta)
                code, details = await raw_call(daemon.address, method, body.SerializeToString())
                if code == grpc.StatusCode.UNIMPLEMENTED:
                    continue
                assert code == grpc.StatusCode.INVALID_ARGUMENT, (what, method, code, details)
                assert "job_dir" in details and len(details) < 300, details
