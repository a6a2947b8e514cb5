"""The shell connector against hostile metas and escaping processes (issue 15: 1, 2, 4, 8).

Every process signalled here was started by this test, and the oracle is independent of
`procfs`: the job's own processes write "pid start_ticks" lines into a file of this
test, and liveness is read straight from /proc/PID/stat.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator

import pytest
from conftest import Jobs, make_template, wait_for
from flyteidl2.core.execution_pb2 import TaskExecution

from connector_cli.errors import UsageError
from connector_cli.sdk.connector import call_method
from flyte_connector_shell import jobdir, procfs
from flyte_connector_shell.connector import ShellConnector, ShellMeta

# The job: a child in the job's session, and a grandchild that calls setsid() and whose
# parent exits at once, so it is re-parented away from the job (issue 15, item 2).
TREE = textwrap.dedent("""
    import os, subprocess, sys, time
    record = sys.argv[1]

    def note():
        raw = open(f"/proc/{os.getpid()}/stat", "rb").read()
        ticks = raw[raw.rindex(b")") + 2:].split()[19].decode()
        with open(record, "a") as out:
            out.write(f"{os.getpid()} {ticks}\\n")

    if len(sys.argv) > 2 and sys.argv[2] == "grandchild":
        os.setsid()
        note()
        time.sleep(300)
    elif len(sys.argv) > 2 and sys.argv[2] == "middle":
        subprocess.Popen([sys.executable, __file__, record, "grandchild"])
        sys.exit(0)
    elif len(sys.argv) > 2 and sys.argv[2] == "child":
        note()
        time.sleep(300)
    else:
        note()
        subprocess.Popen([sys.executable, __file__, record, "child"])
        subprocess.run([sys.executable, __file__, record, "middle"])
        time.sleep(300)
""")


def cgroups_off() -> bool:
    from flyte_connector_shell import cgroups

    return cgroups.base() is None


def stat_of(pid: int) -> tuple[str, int] | None:
    """(state, start ticks) of a process, read from /proc by this test itself."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2:].split()
    return fields[0].decode(), int(fields[19])


def still_running(pid: int, ticks: int) -> bool:
    found = stat_of(pid)
    return found is not None and found[1] == ticks and found[0] not in ("Z", "X")


@dataclasses.dataclass
class Tree:
    record: Path

    def pids(self) -> list[tuple[int, int]]:
        if not self.record.exists():
            return []
        return [(int(p), int(t)) for p, t in
                (line.split() for line in self.record.read_text().splitlines() if line)]

    def alive(self) -> list[int]:
        return [pid for pid, ticks in self.pids() if still_running(pid, ticks)]

    def kill(self) -> None:
        for pid, ticks in self.pids():
            if still_running(pid, ticks):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    script = tmp_path / "tree.py"
    script.write_text(TREE)
    made = Tree(tmp_path / "pids.txt")
    yield made
    made.kill()


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    """A process of this test in a session of its own: what a forged meta aims at."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                            start_new_session=True)
    yield proc
    proc.kill()
    proc.wait(timeout=10)


def victim_meta(victim: subprocess.Popen[bytes], job_dir: str, **changes: object) -> ShellMeta:
    state = stat_of(victim.pid)
    assert state is not None
    meta = ShellMeta(pid=victim.pid, start_ticks=state[1], boot_id=procfs.boot_id(),
                     job_dir=job_dir, grace=0.0)
    return dataclasses.replace(meta, **changes)


async def start_tree(jobs: Jobs, tree: Tree) -> ShellMeta:
    meta = await jobs.create({"command": [sys.executable, str(tree.record.with_name("tree.py")),
                                          str(tree.record)]})
    assert wait_for(lambda: len(tree.pids()) == 3, timeout=15), tree.pids()
    return meta


# ------------------------------------------------------------------ item 2: the whole tree

@pytest.mark.parametrize("restarted", [False, True], ids=["same-connector", "restarted"])
async def test_delete_reaches_a_setsid_grandchild_whose_parent_is_gone(
    jobs: Jobs, tree: Tree, restarted: bool
) -> None:
    meta = await start_tree(jobs, tree)
    assert len(tree.alive()) == 3
    connector = ShellConnector() if restarted else jobs.connector
    await call_method(connector, "delete", meta)
    assert wait_for(lambda: not tree.alive(), timeout=5), f"survivors: {tree.alive()}"
    assert (await jobs.get(meta)).phase == TaskExecution.ABORTED


# ------------------------------------------------------------------ item 1: own invariants

async def test_a_forged_meta_naming_no_job_directory_signals_nothing(
    jobs: Jobs, victim: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    for job_dir in (str(tmp_path), "/dev", "relative/shell-x", str(tmp_path / ".." / "x")):
        # refused when the meta is made (INVALID_ARGUMENT on the wire) or by delete itself
        with pytest.raises((UsageError, ValueError)):
            await call_method(jobs.connector, "delete", victim_meta(victim, job_dir))
    time.sleep(0.2)
    assert victim.poll() is None
    assert not (tmp_path / "deleted").exists()


async def test_a_real_job_directory_with_a_foreign_pid_signals_only_that_jobs_processes(
    jobs: Jobs, victim: subprocess.Popen[bytes], tree: Tree
) -> None:
    """Even with a stolen job directory and nonce, only processes that carry the job's
    marker (or descend from them) are hit: never the pid the meta names, never PID 1."""
    meta = await start_tree(jobs, tree)
    victim_ticks = victim_meta(victim, meta.job_dir).start_ticks
    for pid, ticks, boot in ((victim.pid, victim_ticks, procfs.boot_id()),
                             (0, 0, ""), (1, 0, ""), (-1, 0, "")):
        forged = dataclasses.replace(meta, pid=pid, start_ticks=ticks, boot_id=boot, grace=0.0)
        assert all(p.pid > 1 for p in procfs.job_processes(
            forged.pid, forged.start_ticks, forged.boot_id, nonce=forged.nonce))
        assert victim.pid not in [p.pid for p in procfs.job_processes(
            forged.pid, forged.start_ticks, forged.boot_id, nonce=forged.nonce)]
    await call_method(jobs.connector, "delete", dataclasses.replace(
        meta, pid=victim.pid, start_ticks=victim_ticks))
    time.sleep(0.2)
    assert victim.poll() is None, "the process a forged meta named was signalled"


async def test_a_meta_whose_nonce_does_not_match_its_directory_is_refused(
    jobs: Jobs, tree: Tree
) -> None:
    meta = await start_tree(jobs, tree)
    for nonce in ("", "0" * 32):
        with pytest.raises(UsageError, match="does not match the job directory"):
            await call_method(jobs.connector, "delete", dataclasses.replace(meta, nonce=nonce))
    assert len(tree.alive()) == 3
    assert procfs.job_processes(0, 0, "", nonce="") == []


@pytest.mark.parametrize("grace", [1e9, float("nan")])
async def test_the_kill_grace_from_a_meta_is_bounded(jobs: Jobs, grace: float) -> None:
    meta = await jobs.create({"script": "trap '' TERM; while :; do sleep 0.1; done"})
    assert wait_for(lambda: len(procfs.job_processes(
        meta.pid, meta.start_ticks, meta.boot_id, nonce=meta.nonce)) >= 2)
    started = time.monotonic()
    await call_method(jobs.connector, "delete", dataclasses.replace(meta, grace=grace))
    assert time.monotonic() - started < procfs.MAX_GRACE + 5
    assert procfs.job_processes(meta.pid, meta.start_ticks, meta.boot_id, nonce=meta.nonce) == []


# ------------------------------------------------------------------ item 8: paths from meta

async def test_logs_and_metrics_of_a_meta_naming_dev_are_refused(jobs: Jobs) -> None:
    meta = ShellMeta(pid=os.getpid(), start_ticks=0, boot_id="", job_dir="/dev")
    with pytest.raises(UsageError):
        await jobs.log_lines(meta)
    with pytest.raises(UsageError):
        await call_method(jobs.connector, "get_metrics", meta)
    with pytest.raises(UsageError):
        await jobs.get(meta)


async def test_outputs_outside_the_output_directory_are_not_read_or_revealed(
    jobs: Jobs, tmp_path: Path
) -> None:
    (tmp_path / "exists.txt").write_text("secret")
    meta = await jobs.create({"script": f'ln -s {tmp_path}/exists.txt "$FLYTE_OUTPUT_DIR/to_exists"; '
                                        f'ln -s {tmp_path}/missing.txt "$FLYTE_OUTPUT_DIR/to_missing"'})
    await jobs.finish(meta)
    for relative in ("../../../exists.txt", "../to_missing"):
        with pytest.raises(ValueError):  # the meta itself is refused: INVALID_ARGUMENT
            dataclasses.replace(meta, outputs={"x": relative})
    messages = []
    for relative in ("to_exists", "to_missing", "/etc/hostname"):  # all outside: one answer
        resource = await jobs.get(dataclasses.replace(meta, outputs={"x": relative}))
        assert resource.phase == TaskExecution.FAILED
        assert "secret" not in resource.message
        messages.append(resource.message.replace(relative, "PATH"))
    assert len(set(messages)) == 1, messages


async def test_a_job_cannot_make_the_daemon_read_files_through_its_log_names(
    jobs: Jobs, tmp_path: Path
) -> None:
    outside = tmp_path / "private.txt"
    outside.write_text("not for the caller\n")
    meta = await jobs.create({"script": f'ln -sf {outside} "$FLYTE_JOB_DIR/stdout.new"; '
                                        'mv "$FLYTE_JOB_DIR/stdout.new" "$FLYTE_JOB_DIR/stdout"'})
    await jobs.finish(meta)
    lines, _ = await jobs.log_lines(meta)
    assert "not for the caller" not in lines


# ------------------------------------------------------------------ item 4: job files

async def test_delete_removes_the_jobs_files_but_get_still_says_aborted(
    jobs: Jobs, tree: Tree
) -> None:
    meta = await start_tree(jobs, tree)
    job_dir = Path(meta.job_dir)
    (job_dir / "outputs" / "big").write_bytes(b"x" * 100_000)
    await call_method(jobs.connector, "delete", meta)
    assert sorted(p.name for p in job_dir.iterdir()) <= sorted(jobdir._KEEP)
    assert (await jobs.get(meta)).phase == TaskExecution.ABORTED
    await call_method(jobs.connector, "delete", meta)  # idempotent


async def test_delete_keeps_the_files_when_asked(
    jobs: Jobs, tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(jobdir.KEEP_DELETED_ENV, "1")
    meta = await start_tree(jobs, tree)
    await call_method(jobs.connector, "delete", meta)
    assert (Path(meta.job_dir) / "stdout").exists() and (Path(meta.job_dir) / "outputs").is_dir()


async def test_the_sweep_removes_terminal_jobs_after_the_retention_and_spares_running_ones(
    jobs: Jobs, tree: Tree
) -> None:
    done = await jobs.create({"command": ["true"]})
    await jobs.finish(done)
    running = await start_tree(jobs, tree)
    bases = [jobs.prefix]
    assert jobdir.sweep(bases, keep=3600) == 0
    assert jobdir.sweep(bases, keep=0, now=time.time() + 1) == 1
    assert not Path(done.job_dir).exists()
    assert Path(running.job_dir).is_dir() and len(tree.alive()) == 3
    lost = await jobs.get(done)
    assert lost.phase == TaskExecution.RETRYABLE_FAILED and "is gone" in lost.message
    await call_method(jobs.connector, "delete", done)  # a removed job deletes fine


async def test_the_connector_sweeps_during_create_with_the_configured_retention(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A restarted daemon's first create sweeps the state directory (remote prefixes)."""
    monkeypatch.setenv(jobdir.RETENTION_ENV, "0")
    monkeypatch.setenv(jobdir.STATE_DIR_ENV, str(tmp_path / "state"))
    template = make_template({"command": ["true"]})
    first = await call_method(jobs.connector, "create", template, "s3://bucket/run/0")
    jobs.started.append(first)
    await jobs.finish(first)
    # the wrapper writes its exit record just before it exits: a live marker is spared
    assert wait_for(lambda: first.nonce.encode() not in procfs.running_markers())
    second = await call_method(ShellConnector(), "create", template, "s3://bucket/run/1")
    jobs.started.append(second)
    assert not Path(first.job_dir).exists()
    assert Path(second.job_dir).is_dir()


@pytest.mark.parametrize("value", ["soon", "-1", "inf", "nan"])
async def test_a_bad_retention_setting_is_one_clear_error(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(jobdir.RETENTION_ENV, value)
    with pytest.raises(UsageError, match=jobdir.RETENTION_ENV):
        await jobs.create({"command": ["true"]})


async def test_a_restarted_daemon_deletes_the_whole_tree_from_the_signed_meta(
    tree: Tree, tmp_path: Path
) -> None:
    """Item 2 end to end: daemon one starts the job, daemon two (same key) deletes it."""
    from connector_cli.testing import serve_in_background

    key = tmp_path / "meta.key"
    key.write_text(os.urandom(32).hex())
    template = make_template({"command": [sys.executable, str(tree.record.with_name("tree.py")),
                                          str(tree.record)]})
    async with serve_in_background(plugins=["shell"], meta_key_file=str(key)) as first:
        meta = await first.client.create(template, str(tmp_path / "out"))
    try:
        assert wait_for(lambda: len(tree.pids()) == 3, timeout=15), tree.pids()
        async with serve_in_background(plugins=["shell"], meta_key_file=str(key)) as second:
            await second.client.delete(("shell", 0), meta)
            assert wait_for(lambda: not tree.alive(), timeout=5), f"survivors: {tree.alive()}"
            resource = await second.client.get(("shell", 0), meta)
            assert resource.phase == TaskExecution.ABORTED
    finally:
        tree.kill()


def test_a_log_page_is_bounded_by_bytes_however_many_lines_are_asked_for(
        tmp_path: Path) -> None:
    """Issue 28, item 7: `lines` lines were read into memory at once (a 1 GB log cost
    2.4 GiB) and 64 KiB lines made the default page too big for one message."""
    import tracemalloc

    from flyte_connector_shell import logs

    with open(tmp_path / "stdout", "wb") as out:  # 1 GB of 64 KiB lines, written sparse
        line = b"x" * (logs.MAX_LINE - 1) + b"\n"
        out.write(line * 64)
        out.truncate(1 << 30)
    tracemalloc.start()
    page = logs.read_page(tmp_path, "", 1_000_000_000, True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = sum(len(text) for _, text in page.lines)
    assert 0 < size <= logs.MAX_PAGE_BYTES
    assert peak < 8 * logs.MAX_PAGE_BYTES, peak
    assert page.next_token == f"{size + len(page.lines)}:0"
    default = logs.read_page(tmp_path, "", 0, True)
    assert sum(len(t) for _, t in default.lines) <= logs.MAX_PAGE_BYTES


async def test_a_job_that_empties_its_working_directory_can_still_be_tracked_and_stopped(
        jobs: Jobs) -> None:
    """Issue 28, item 4: the default workdir was the job directory with the daemon's
    control files; `rm -rf ./*` made GetTask INVALID_ARGUMENT and the job unstoppable."""
    meta = await jobs.create({"script": "rm -rf ./* ./.[!.]*; touch done; sleep 300"})
    assert wait_for(lambda: (Path(meta.job_dir) / "work" / "done").exists())
    resource = await jobs.get(meta)
    assert resource.phase == TaskExecution.RUNNING, resource.message
    stray = await jobs.create({"script": 'rm -rf "$FLYTE_JOB_DIR"/*; sleep 300'})
    assert wait_for(lambda: not (Path(stray.job_dir) / jobdir.NONCE_FILE).exists())
    ended = await jobs.get(stray)
    assert ended.phase == TaskExecution.FAILED and "control files" in (ended.message or "")
    assert wait_for(lambda: not stray.running())
    await call_method(jobs.connector, "delete", meta)
    assert wait_for(lambda: not meta.running())


@pytest.mark.parametrize("custom,inputs,named", [
    ({"script": "true"}, {"big": "x" * (128 * 1024)}, "$FLYTE_INPUT_BIG"),
    ({"command": ["echo", "{{.inputs.big}}"]}, {"big": "y" * 200_000}, "command argument 1"),
    ({"script": "true"}, {f"i{n}": "z" * 100_000 for n in range(40)}, "system allows"),
    ({"command": ["echo", "{{.inputs.s}}"]}, {"s": "a\0b"}, "NUL"),
])
async def test_inputs_the_kernel_cannot_pass_are_refused_naming_them(
        jobs: Jobs, custom: dict, inputs: dict, named: str) -> None:
    """Issue 28, items 10 and 16: 128 KiB inputs (or an environment over ARG_MAX) failed
    CreateTask with INTERNAL "Argument list too long"; a NUL in an argument was
    reported RETRYABLE_FAILED (Flyte retries a deterministic error)."""
    with pytest.raises(UsageError, match="shell task: ") as caught:
        await jobs.create(custom, inputs)
    assert named in str(caught.value)
    assert len(str(caught.value)) < 300
    ok = await jobs.run({"script": "true"}, {"big": "x" * (100 * 1024)})
    assert ok.phase == TaskExecution.SUCCEEDED


ESCAPEE = ("import os, signal, sys, time\n"
           "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
           "open(sys.argv[1], 'w').write(str(os.getpid()))\n"
           "time.sleep(300)\n")


@pytest.mark.skipif(cgroups_off(), reason="no writable cgroup v2 here: the process scan "
                    "is in force (docs/plugins/shell.md)")
async def test_a_child_under_env_i_that_ignores_sigterm_is_stopped_by_delete(
        jobs: Jobs, tmp_path: Path) -> None:
    """Issue 28, item 5: a child started with an empty environment (no nonce) whose
    parent has exited escaped the process scan; the job's cgroup holds it."""
    pidfile = tmp_path / "escapee.pid"
    script = tmp_path / "escapee.py"
    script.write_text(ESCAPEE)
    meta = await jobs.create({"script": f"env -i {sys.executable} {script} {pidfile} & sleep 300"})
    assert meta.cgroup, "no cgroup although cgroup v2 is writable"
    assert wait_for(lambda: pidfile.exists() and pidfile.read_text() != "")
    escapee = int(pidfile.read_text())
    ticks = stat_of(escapee)
    assert ticks is not None
    started = time.monotonic()
    await call_method(jobs.connector, "delete", meta)
    assert wait_for(lambda: not still_running(escapee, ticks[1]), timeout=5)
    assert time.monotonic() - started < meta.grace + 3
    left = Path(meta.cgroup, "cgroup.procs").read_text() if Path(meta.cgroup).exists() else ""
    assert not Path(meta.cgroup).exists(), [(p, stat_of(int(p))) for p in left.split()]


async def test_deletes_wait_out_their_grace_off_the_worker_pool(jobs: Jobs) -> None:
    """Issue 28, item 13: 96 concurrent deletes of jobs that ignore SIGTERM held the
    shared worker threads for their grace, and GetTask on another job waited 16.8 s."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    stubborn = [await jobs.create({"script": "trap '' TERM; sleep 300 & sleep 300",
                                   "kill_grace_seconds": 1.5}) for _ in range(8)]
    other = await jobs.create({"script": "sleep 300"})
    await asyncio.sleep(0.3)
    with ThreadPoolExecutor(4) as pool:
        deletes = [asyncio.ensure_future(call_method(jobs.connector, "delete", m, executor=pool))
                   for m in stubborn]
        await asyncio.sleep(0.2)
        started = time.monotonic()
        resource = await call_method(jobs.connector, "get", other, executor=pool)
        waited = time.monotonic() - started
        await asyncio.gather(*deletes)
    assert resource.phase == TaskExecution.RUNNING
    assert waited < 0.5, f"get waited {waited:.2f}s behind deletes"
    assert not any(m.alive() for m in stubborn)


async def test_a_struct_with_nan_is_refused_rather_than_sent_as_invalid_json(
        jobs: Jobs) -> None:
    """Issue 28, item 16: a STRUCT with NaN reached the job as invalid JSON."""
    with pytest.raises(UsageError, match="input 'cfg' holds NaN or Infinity"):
        await jobs.create({"script": "true"}, {"cfg": {"x": float("nan")}})


@pytest.mark.skipif(cgroups_off(), reason="no writable cgroup v2 here: the process scan "
                    "is in force (docs/plugins/shell.md)")
async def test_a_lost_jobs_empty_cgroup_is_swept_by_the_next_daemons_first_create(
        tmp_path: Path) -> None:
    """A job nobody polled to its end nor deleted (the backend lost it) left its empty
    cgroup behind for good; the first create of a daemon (and one every 10 minutes) removes
    those older than 5 minutes, never a young one (a create moves into it) or a busy one."""
    from flyte_connector_shell import cgroups

    root = cgroups.base()
    assert root is not None
    lost, young, busy = (root / f"{cgroups.PREFIX}test-{kind}-{os.getpid()}"
                         for kind in ("lost", "young", "busy"))
    for path in (lost, young, busy):
        path.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (busy / "cgroup.procs").write_text(str(sleeper.pid))
        old = time.time() - 3600
        for path in (lost, busy):
            os.utime(path, (old, old))
        jobs = Jobs(ShellConnector(), tmp_path)
        meta = await jobs.create({"script": "true"})
        assert not lost.exists()
        assert young.exists() and busy.exists()
        await call_method(jobs.connector, "delete", meta)
    finally:
        sleeper.kill()
        sleeper.wait()
        for path in (lost, young, busy):
            cgroups.remove(path)
