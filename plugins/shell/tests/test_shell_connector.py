"""The shell connector through its API (call_method), with real processes."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest
from conftest import Jobs, alive, make_template, wait_for
from flyteidl2.core.execution_pb2 import TaskExecution

from connector_cli.errors import ResourceMetaError, UsageError
from connector_cli.literals import FlyteFile
from connector_cli.sdk.connector import call_method
from flyte_connector_shell import procfs
from flyte_connector_shell.connector import ShellConnector, ShellMeta


async def test_script_succeeds_with_exit_code_and_declared_file_output(jobs: Jobs) -> None:
    custom = {
        "script": 'mkdir -p sub && printf "%s\\n" "$FLYTE_INPUT_NAME" > sub/name.txt',
        "workdir": "outputs",
        "outputs": {"name_file": "sub/name.txt"},
    }
    resource = await jobs.run(custom, {"name": "Ada"}, outputs={"exit_code": "int", "name_file": "file"})
    assert resource.phase == TaskExecution.SUCCEEDED, resource.message
    assert resource.outputs["exit_code"] == 0
    produced = resource.outputs["name_file"]
    assert isinstance(produced, FlyteFile)
    assert Path(produced.uri).read_text() == "Ada\n"
    assert Path(produced.uri).is_relative_to(jobs.prefix)


async def test_inputs_reach_argv_placeholders_and_env_as_text_or_json(jobs: Jobs) -> None:
    code = "import os, sys; print(sys.argv[1:]); print(os.environ['FLYTE_INPUT_ROWS'], os.environ['FLYTE_INPUT_OPTS'])"
    custom = {"command": ["python3", "-c", code, "--name={{ .inputs.name }}", "{{.inputs.rows}}"]}
    meta = await jobs.create(custom, {"name": "a b", "rows": 3, "opts": {"k": [1, True]}})
    assert (await jobs.finish(meta)).phase == TaskExecution.SUCCEEDED
    lines, _ = await jobs.log_lines(meta)
    assert lines == ["['--name=a b', '3']", '3 {"k":[1,true]}']


async def test_hostile_input_stays_inert_in_scripts_and_argv(jobs: Jobs, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    marker = tmp_path / "pwned"
    hostile = f"$(touch {marker}); rm -rf {victim}; `touch {marker}` \"'; touch {marker}"
    script = {"script": 'echo "$FLYTE_INPUT_EVIL"; printf "%s\\n" $FLYTE_INPUT_EVIL > /dev/null'}
    argv = {"command": ["echo", "{{.inputs.evil}}"]}
    for custom in (script, argv):
        meta = await jobs.create(custom, {"evil": hostile})
        assert (await jobs.finish(meta)).phase == TaskExecution.SUCCEEDED
        lines, _ = await jobs.log_lines(meta)
        assert lines[0] == hostile
    assert victim.is_dir() and not marker.exists()


async def test_scripts_refuse_placeholders(jobs: Jobs) -> None:
    with pytest.raises(UsageError, match=r"not substituted into scripts.*FLYTE_INPUT_NAME"):
        await jobs.create({"script": "echo {{.inputs.name}}"}, {"name": "x"})


@pytest.mark.parametrize(
    ("custom", "error"),
    [
        ({}, "exactly one of 'command'"),
        ({"command": ["a"], "script": "b"}, "exactly one of 'command'"),
        ({"command": "ls -l"}, "use 'script' for a string"),
        ({"command": []}, "non-empty list of strings"),
        ({"script": "true", "env": {"1BAD": "x"}}, "not a valid environment variable name"),
        ({"script": "true", "env": {"N": 1}}, r"env\.N must be a string"),
        ({"script": "true", "outputs": {"o": "../escape"}}, "relative path inside the output"),
        ({"script": "true", "outputs": {"o": "/etc/passwd"}}, "relative path inside the output"),
        ({"script": "true", "kill_grace_seconds": 60}, "from 0 to 5"),
        ({"script": "true", "workdir": "/nonexistent/dir"}, "not an existing directory"),
        ({"script": "true", "workdir": "a/../.."}, "must not contain '..'"),
        ({"script": "true", "shell": "bash"}, r"unknown field\(s\) shell"),
        ({"command": ["echo", "{{.inputs.missing}}"]}, r"inputs\.missing.*inputs are: none"),
    ],
)
async def test_bad_templates_are_one_line_usage_errors(jobs: Jobs, custom: dict, error: str) -> None:
    with pytest.raises(UsageError, match=error):
        await jobs.create(custom)
    assert not jobs.prefix.exists() or not list(jobs.prefix.iterdir()), "a job directory was left behind"


async def test_workdir_is_absolute_or_made_in_the_job_dir(jobs: Jobs, tmp_path: Path) -> None:
    relative = await jobs.create({"script": "pwd", "workdir": "scratch/here"})
    await jobs.finish(relative)
    assert (await jobs.log_lines(relative))[0] == [f"{relative.job_dir}/scratch/here"]
    absolute = await jobs.create({"script": "pwd", "workdir": str(tmp_path)})
    await jobs.finish(absolute)
    assert (await jobs.log_lines(absolute))[0] == [str(tmp_path)]


async def test_file_and_date_inputs_reach_the_environment_as_text(jobs: Jobs) -> None:
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    meta = await jobs.create({"script": 'echo "$FLYTE_INPUT_SRC $FLYTE_INPUT_WHEN $FLYTE_INPUT_MAX_ROWS"'},
                             {"src": FlyteFile(uri="file:///data/in.csv"), "when": when, "max-rows": None})
    await jobs.finish(meta)
    assert (await jobs.log_lines(meta))[0] == ["/data/in.csv 2024-05-06T07:08:09+00:00 null"]


async def test_file_outputs_must_be_in_the_interface(jobs: Jobs) -> None:
    with pytest.raises(UsageError, match=r"custom\.outputs report not in the task interface"):
        await jobs.create({"script": "true", "outputs": {"report": "r.txt"}}, outputs={"other": "int"})


async def test_exit_code_is_an_output_only_when_declared_or_no_interface(jobs: Jobs) -> None:
    declared = await jobs.run({"script": "touch \"$FLYTE_OUTPUT_DIR/r\"", "outputs": {"r": "r"}},
                              outputs={"r": "file"})
    assert set(declared.outputs) == {"r"}
    bare = await jobs.run({"script": "true"})
    assert bare.outputs == {"exit_code": 0}


async def test_failure_reports_exit_code_and_stderr_tail(jobs: Jobs) -> None:
    resource = await jobs.run({"script": "echo fine; echo 'first problem' >&2; echo 'disk full' >&2; exit 3"})
    assert resource.phase == TaskExecution.FAILED
    assert resource.message == "exit code 3: first problem | disk full"
    assert resource.custom_info["exit_code"] == 3


async def test_missing_program_and_missing_output_fail_clearly(jobs: Jobs) -> None:
    missing = await jobs.run({"command": ["no-such-program-xyz", "a"]})
    assert missing.phase == TaskExecution.FAILED
    assert missing.message.startswith("exit code 127: flyte-connector-shell: cannot run 'no-such-program-xyz'")
    unwritten = await jobs.run({"script": "true", "outputs": {"r": "r.txt"}})
    assert unwritten.phase == TaskExecution.FAILED
    assert "did not write output 'r' ($FLYTE_OUTPUT_DIR/r.txt)" in unwritten.message


async def test_environment_is_minimal_unless_inherited(jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAEMON_ONLY_VAR", "daemon")
    custom = {"script": 'echo "${DAEMON_ONLY_VAR:-unset} $MINE $TOKEN $PWD"', "env": {"MINE": "m"}}
    meta = await jobs.create(custom, TOKEN="from-connection")
    await jobs.finish(meta)
    assert (await jobs.log_lines(meta))[0] == [f"unset m from-connection {meta.job_dir}/work"]
    meta = await jobs.create({**custom, "inherit_env": True})
    await jobs.finish(meta)
    assert (await jobs.log_lines(meta))[0][0].startswith("daemon m")


async def test_create_returns_at_once_and_get_reports_running(jobs: Jobs) -> None:
    started = time.monotonic()
    meta = await jobs.create({"command": ["sleep", "30"]})
    assert time.monotonic() - started < 1.0
    running = await jobs.get(meta)
    assert running.phase == TaskExecution.RUNNING
    assert running.custom_info["pid"] == meta.pid
    stat = procfs.read_stat(meta.pid)
    assert stat is not None and stat.session == meta.pid and stat.pgrp == meta.pid


async def test_delete_kills_the_whole_tree_fast_and_is_idempotent(jobs: Jobs) -> None:
    script = "sh -c 'sleep 30 & sleep 30' & setsid sleep 30 & sleep 30"
    meta = await jobs.create({"script": script})
    assert wait_for(lambda: len(procfs.job_processes(meta.pid, meta.start_ticks, meta.boot_id, nonce=meta.nonce)) >= 6)
    tree = [p.pid for p in procfs.job_processes(meta.pid, meta.start_ticks, meta.boot_id, nonce=meta.nonce)]
    started = time.monotonic()
    await call_method(jobs.connector, "delete", meta)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"delete took {elapsed:.2f}s"
    assert not [pid for pid in tree if alive(pid)]
    resource = await jobs.get(meta)
    assert resource.phase == TaskExecution.ABORTED
    assert resource.message.startswith("deleted")
    await call_method(jobs.connector, "delete", meta)
    assert (await jobs.get(meta)).phase == TaskExecution.ABORTED


async def test_delete_sigkills_what_ignores_sigterm_after_the_grace(jobs: Jobs) -> None:
    script = "trap '' TERM; sh -c \"trap '' TERM; sleep 30\" & sleep 30; sleep 30"
    meta = await jobs.create({"script": script, "kill_grace_seconds": 0.3})
    assert wait_for(lambda: len(procfs.job_processes(meta.pid, meta.start_ticks, meta.boot_id, nonce=meta.nonce)) >= 4)
    started = time.monotonic()
    await call_method(jobs.connector, "delete", meta)
    assert 0.3 <= time.monotonic() - started < 2.0
    assert procfs.job_processes(meta.pid, meta.start_ticks, meta.boot_id, nonce=meta.nonce) == []
    assert (await jobs.get(meta)).phase == TaskExecution.ABORTED


async def test_delete_of_finished_and_unknown_jobs_is_a_no_op(jobs: Jobs, tmp_path: Path) -> None:
    meta = await jobs.create({"script": "exit 0"})
    assert (await jobs.finish(meta)).phase == TaskExecution.SUCCEEDED
    await call_method(jobs.connector, "delete", meta)
    assert (await jobs.get(meta)).phase == TaskExecution.SUCCEEDED
    unknown = ShellMeta(pid=2**22 + 7, start_ticks=1, boot_id=procfs.boot_id(), job_dir=str(tmp_path / "gone"))
    await call_method(jobs.connector, "delete", unknown)
    lost = await jobs.get(unknown)
    assert lost.phase == TaskExecution.RETRYABLE_FAILED and "is gone" in lost.message


async def test_a_reused_pid_is_neither_reported_running_nor_killed(jobs: Jobs) -> None:
    meta = await jobs.create({"command": ["sleep", "30"]})
    impostor = ShellMeta.decode(meta.encode())
    impostor.start_ticks -= 1
    resource = await jobs.get(impostor)
    assert resource.phase == TaskExecution.RETRYABLE_FAILED
    assert "ended without recording an exit code" in resource.message
    await call_method(jobs.connector, "delete", impostor)
    assert alive(meta.pid) and (await jobs.get(meta)).phase == TaskExecution.RUNNING
    other_boot = ShellMeta.decode(meta.encode())
    other_boot.boot_id = "another-boot"
    assert (await jobs.get(other_boot)).phase == TaskExecution.RETRYABLE_FAILED


async def test_a_job_killed_outside_the_connector_is_retryable_not_running(jobs: Jobs) -> None:
    meta = await jobs.create({"command": ["sleep", "30"]})
    os.killpg(meta.pid, 9)
    assert wait_for(lambda: not procfs.is_running(meta.pid, meta.start_ticks, meta.boot_id, meta.nonce))
    resource = await jobs.get(meta)
    assert resource.phase == TaskExecution.RETRYABLE_FAILED
    assert "ended without recording an exit code" in resource.message


async def test_logs_paginate_with_tokens_honouring_lines(jobs: Jobs) -> None:
    meta = await jobs.create({"script": "for i in $(seq 1 25); do echo out$i; done; echo err1 >&2; echo err2 >&2"})
    assert (await jobs.finish(meta)).phase == TaskExecution.SUCCEEDED
    pages, token = [], ""
    while True:
        lines, token = await jobs.log_lines(meta, token, lines=10)
        pages.append(lines)
        if not token:
            break
    assert [len(p) for p in pages] == [10, 10, 7]
    assert sum(pages, []) == [f"out{i}" for i in range(1, 26)] + ["err1", "err2"]
    everything, last = await jobs.log_lines(meta)
    assert len(everything) == 27 and last == ""
    with pytest.raises(UsageError, match="was not issued by the shell connector"):
        await jobs.log_lines(meta, "garbage")


async def test_logs_of_a_running_job_follow_complete_lines(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYTE_CONNECTOR_SHELL_KEEP_DELETED", "1")  # logs stay readable
    meta = await jobs.create({"script": "echo one; printf two; sleep 30"})
    assert wait_for(lambda: (Path(meta.job_dir) / "stdout").stat().st_size == 7)
    lines, token = await jobs.log_lines(meta)
    assert lines == ["one"] and token == "4:0"
    assert await jobs.log_lines(meta, token) == ([], "4:0")
    await call_method(jobs.connector, "delete", meta)
    assert await jobs.log_lines(meta, token) == (["two"], "")


def _metric(response: object, name: str) -> float | None:
    for result in response.results:  # type: ignore[attr-defined]
        if result.metric == name:
            series = result.data["result"]
            return float(series[0]["values"][0][1]) if series else None
    raise AssertionError(f"no metric {name}")


async def test_metrics_measure_cpu_and_memory_of_the_tree(jobs: Jobs) -> None:
    burn = ("import time\nx = bytearray(64 * 1024 * 1024)\nend = time.process_time() + 0.3\n"
            "while time.process_time() < end: pass\nprint('burnt', flush=True)\ntime.sleep(30)")
    meta = await jobs.create({"script": "python3 -c \"$PROGRAM\" & sleep 30", "env": {"PROGRAM": burn}})
    assert wait_for(lambda: (Path(meta.job_dir) / "stdout").stat().st_size > 0, timeout=10)
    live = await call_method(jobs.connector, "get_metrics", meta)
    assert [r.metric for r in live.results] == ["cpu_seconds", "memory_rss_bytes", "memory_peak_rss_bytes", "processes"]
    assert _metric(live, "cpu_seconds") >= 0.25
    assert _metric(live, "memory_rss_bytes") >= 64 * 1024 * 1024
    assert _metric(live, "processes") in (2, 3)  # sh may exec its last command
    assert _metric(live, "memory_peak_rss_bytes") is None
    await call_method(jobs.connector, "delete", meta)
    done = await call_method(jobs.connector, "get_metrics", meta, queries=["cpu_seconds", "memory_peak_rss_bytes"])
    assert [r.metric for r in done.results] == ["cpu_seconds", "memory_peak_rss_bytes"]
    assert done.results[0].data["resultType"] == "matrix"
    with pytest.raises(UsageError, match="unknown metric 'gpu'"):
        await call_method(jobs.connector, "get_metrics", meta, queries=["gpu"])


async def test_finished_metrics_come_from_the_exit_record(jobs: Jobs) -> None:
    burn = "python3 -c 'import time\nend = time.process_time() + 0.2\nwhile time.process_time() < end: pass'"
    meta = await jobs.create({"script": burn})
    assert (await jobs.finish(meta)).phase == TaskExecution.SUCCEEDED
    done = await call_method(jobs.connector, "get_metrics", meta)
    assert _metric(done, "cpu_seconds") >= 0.18
    assert _metric(done, "memory_peak_rss_bytes") > 1024 * 1024
    assert _metric(done, "memory_rss_bytes") is None


def test_meta_round_trips_and_rejects_garbage() -> None:
    meta = ShellMeta(pid=12, start_ticks=34, boot_id="b", job_dir="/j", outputs={"r": "r.txt"})
    assert ShellMeta.decode(meta.encode()) == meta
    assert len(meta.encode()) < 200
    with pytest.raises(ResourceMetaError):
        ShellMeta.decode(b'{"pid": "12"}')


async def test_outputs_under_a_remote_prefix_go_to_the_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYTE_CONNECTOR_SHELL_STATE_DIR", str(tmp_path / "state"))
    connector = ShellConnector()
    template = make_template({"script": "echo hi"})
    meta = await call_method(connector, "create", template, "s3://bucket/run/0", None)
    assert Path(meta.job_dir).parent == tmp_path / "state"
    assert wait_for(lambda: (Path(meta.job_dir) / "exit.json").exists())
    assert (await call_method(connector, "get", meta)).phase == TaskExecution.SUCCEEDED
