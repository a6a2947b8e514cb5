"""connector_cli.sdk.job_dirs (retention, discard, sweep) on real directories and a real
process, with a small plugin's rules: a job directory is `demo-*`, its job ended when it
wrote `end`, and it runs while the pid in `pid` lives."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

from connector_cli.errors import UsageError
from connector_cli.sdk import job_dirs
from connector_cli.sdk.job_dirs import RetentionPolicy, Sweeper

PREFIX = "FLYTE_CONNECTOR_DEMO"
OLD = time.time() - 7200


def ended_at(job_dir: Path) -> Optional[float]:
    """The demo plugin's rule: `demo-*` directories, ended when they wrote `end`."""
    if not job_dir.name.startswith("demo-"):
        return None
    try:
        return (job_dir / "end").stat().st_mtime
    except OSError:
        return None


class Snapshots:
    """The demo plugin's liveness rule, counting how often a snapshot is taken."""

    def __init__(self) -> None:
        self.taken = 0

    def __call__(self) -> Callable[[Path], bool]:
        self.taken += 1

        def runs(job_dir: Path) -> bool:
            try:
                os.kill(int((job_dir / "pid").read_text()), 0)
            except (OSError, ValueError):
                return False
            return True

        return runs


@pytest.fixture
def snapshots() -> Snapshots:
    return Snapshots()


@pytest.fixture
def policy(snapshots: Snapshots, monkeypatch: pytest.MonkeyPatch) -> RetentionPolicy:
    monkeypatch.delenv(f"{PREFIX}_RETENTION_SECONDS", raising=False)
    monkeypatch.delenv(f"{PREFIX}_KEEP_DELETED", raising=False)
    return RetentionPolicy(PREFIX, frozenset({"spec", "end"}), ended_at, snapshots, "demo")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=30)


def job(base: Path, name: str, ended: Optional[float] = OLD, pid: Optional[int] = None) -> Path:
    """A demo job directory with some files, ended at `ended` (None: not yet)."""
    path = base / name
    (path / "outputs").mkdir(parents=True)
    (path / "outputs" / "big").write_bytes(b"x" * 1000)
    (path / "spec").write_text("{}")
    if ended is not None:
        (path / "end").write_text("0")
        os.utime(path / "end", (ended, ended))
    if pid is not None:
        (path / "pid").write_text(str(pid))
    return path


# ------------------------------------------------------------------ settings

def test_the_variables_are_named_by_the_prefix(policy: RetentionPolicy) -> None:
    assert policy.retention_env == "FLYTE_CONNECTOR_DEMO_RETENTION_SECONDS"
    assert policy.keep_deleted_env == "FLYTE_CONNECTOR_DEMO_KEEP_DELETED"


@pytest.mark.parametrize("raw, expected", [
    (None, job_dirs.DEFAULT_RETENTION), ("", 24 * 3600.0), ("  ", 24 * 3600.0),
    ("off", None), (" OFF ", None), ("0", 0.0), ("90.5", 90.5), ("3600", 3600.0),
])
def test_retention_reads_seconds_or_off(
    policy: RetentionPolicy, monkeypatch: pytest.MonkeyPatch, raw: Optional[str],
    expected: Optional[float],
) -> None:
    if raw is not None:
        monkeypatch.setenv(policy.retention_env, raw)
    assert policy.retention() == expected


@pytest.mark.parametrize("raw", ["soon", "-1", "inf", "nan", "1e999", "1h"])
def test_a_bad_retention_is_one_clear_usage_error(
    policy: RetentionPolicy, monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv(policy.retention_env, raw)
    with pytest.raises(UsageError) as caught:
        policy.retention()
    assert str(caught.value) == (
        f"FLYTE_CONNECTOR_DEMO_RETENTION_SECONDS={raw.lower()!r} "
        "is not a number of seconds >= 0 (or 'off')"
    )


@pytest.mark.parametrize("raw, expected", [
    ("1", True), ("true", True), (" YES ", True), ("0", False), ("no", False), ("", False),
])
def test_keep_deleted_takes_the_usual_yes_words(
    policy: RetentionPolicy, monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool
) -> None:
    monkeypatch.setenv(policy.keep_deleted_env, raw)
    assert policy.keep_deleted() is expected


# ------------------------------------------------------------------ discard

def test_discard_keeps_only_the_tombstone_and_follows_no_link(
    policy: RetentionPolicy, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    path = job(tmp_path, "demo-1")
    (path / "linked").symlink_to(outside)
    (path / "stdout").write_text("log")
    policy.discard(path)
    assert sorted(p.name for p in path.iterdir()) == ["end", "spec"]
    assert (outside / "precious").read_text() == "keep me"
    policy.discard(path)  # idempotent


def test_discard_leaves_everything_when_asked(
    policy: RetentionPolicy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(policy.keep_deleted_env, "1")
    path = job(tmp_path, "demo-1")
    policy.discard(path)
    assert (path / "outputs" / "big").is_file()


# ------------------------------------------------------------------ sweep

def test_the_sweep_removes_only_ended_old_jobs_that_no_longer_run(
    policy: RetentionPolicy, snapshots: Snapshots, tmp_path: Path,
    sleeper: subprocess.Popen[bytes], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=job_dirs.__name__)
    old = job(tmp_path, "demo-old")
    recent = job(tmp_path, "demo-recent", ended=time.time())
    unfinished = job(tmp_path, "demo-unfinished", ended=None)
    running = job(tmp_path, "demo-running", pid=sleeper.pid)
    stranger = job(tmp_path, "other-old")
    (tmp_path / "demo-link").symlink_to(old.parent / "elsewhere", target_is_directory=True)
    job(tmp_path, "elsewhere")
    (tmp_path / "demo-file").write_text("not a directory")
    assert policy.sweep([tmp_path, tmp_path / "missing"], keep=3600) == 1
    assert not old.exists()
    assert all(p.is_dir() for p in (recent, unfinished, running, stranger))
    assert (tmp_path / "demo-link").is_symlink() and (tmp_path / "demo-file").is_file()
    assert snapshots.taken == 1
    assert "removed 1 demo job directories older than 3600s" in caplog.text


def test_the_sweep_takes_no_snapshot_when_nothing_is_old_enough(
    policy: RetentionPolicy, snapshots: Snapshots, tmp_path: Path
) -> None:
    job(tmp_path, "demo-1")
    assert policy.sweep([tmp_path], keep=1e9) == 0
    assert snapshots.taken == 0
    assert policy.sweep([tmp_path], keep=3600, now=OLD + 10) == 0
    assert snapshots.taken == 0


def test_a_job_that_stopped_running_goes_on_the_next_sweep(
    policy: RetentionPolicy, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    path = job(tmp_path, "demo-1", pid=sleeper.pid)
    assert policy.sweep([tmp_path], keep=0) == 0
    sleeper.kill()
    sleeper.wait(timeout=30)
    assert policy.sweep([tmp_path], keep=0) == 1
    assert not path.exists()


# ------------------------------------------------------------------ sweeper

def test_the_sweeper_sweeps_its_home_and_what_it_remembers_at_most_once_a_minute(
    policy: RetentionPolicy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(policy.retention_env, "3600")
    home, used, unknown = tmp_path / "home", tmp_path / "used", tmp_path / "unknown"
    sweeper = Sweeper(policy, lambda: home)
    sweeper.remember(used)
    first = [job(home, "demo-1"), job(used, "demo-2"), job(unknown, "demo-3")]
    assert sweeper.maybe_sweep() == 2
    assert [p.exists() for p in first] == [False, False, True]
    later = job(home, "demo-4")
    assert sweeper.maybe_sweep() == 0  # within SWEEP_EVERY of the last sweep
    assert later.is_dir()
    assert Sweeper(policy, lambda: home).maybe_sweep() == 1  # a fresh connector sweeps


def test_the_sweeper_keeps_jobs_a_day_by_default(policy: RetentionPolicy, tmp_path: Path) -> None:
    young, old = job(tmp_path, "demo-1"), job(tmp_path, "demo-2", ended=time.time() - 86500)
    assert Sweeper(policy, lambda: tmp_path).maybe_sweep() == 1
    assert young.is_dir() and not old.exists()


def test_the_sweeper_does_nothing_when_off_but_reports_a_bad_setting_every_time(
    policy: RetentionPolicy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = job(tmp_path, "demo-1")
    sweeper = Sweeper(policy, lambda: tmp_path)
    monkeypatch.setenv(policy.retention_env, "off")
    assert sweeper.maybe_sweep() == 0 and path.is_dir()
    monkeypatch.setenv(policy.retention_env, "0")
    assert sweeper.maybe_sweep() == 1  # "off" did not count as a sweep
    monkeypatch.setenv(policy.retention_env, "later")
    for _ in range(2):
        with pytest.raises(UsageError, match=policy.retention_env):
            sweeper.maybe_sweep()


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_a_state_directory_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    """Issue 28, item 15: state directories writable by others were used."""
    from connector_cli.errors import UsageError
    from connector_cli.sdk.job_dirs import private_dir

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    with pytest.raises(UsageError, match="no other user can write"):
        private_dir(shared, "state directory")
    made = private_dir(tmp_path / "fresh" / "state", "state directory")
    assert made.stat().st_mode & 0o777 == 0o700


def test_a_state_directory_of_another_user_or_a_symlink_is_refused(tmp_path: Path) -> None:
    from connector_cli.errors import StartupError, UsageError
    from connector_cli.sdk.job_dirs import private_dir
    from connector_cli.signing import generated_key

    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    if os.getuid() == 0:
        os.chown(theirs, 65534, 65534)
        with pytest.raises(UsageError):
            private_dir(theirs, "state directory")
        with pytest.raises(StartupError, match="owned by this user"):
            generated_key(theirs)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "fresh", target_is_directory=True)
    (tmp_path / "fresh").mkdir(mode=0o700)
    with pytest.raises(UsageError):
        private_dir(link, "state directory")


def test_state_directories_default_under_xdg_state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from connector_cli.sdk.job_dirs import default_state_dir

    monkeypatch.delenv("X_STATE", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_state_dir("flyte-connector-x", "X_STATE") == tmp_path / "flyte-connector-x"
    monkeypatch.setenv("X_STATE", "/elsewhere")
    assert default_state_dir("flyte-connector-x", "X_STATE") == Path("/elsewhere")


def test_a_meta_may_name_only_a_real_job_directory_of_ours(tmp_path: Path) -> None:
    from connector_cli.sdk.job_dirs import checked_job_dir

    def named(name: str) -> bool:
        return name.startswith("job-")

    job = tmp_path / "job-1"
    job.mkdir()
    assert checked_job_dir(str(job), named, "test job directory") == job
    assert checked_job_dir(str(tmp_path / "job-gone"), named, "test job directory") is None
    (tmp_path / "job-link").symlink_to(job)
    other = tmp_path / "other"
    other.mkdir()
    for forged in ("relative/job-1", str(tmp_path / "job-1" / ".." / "job-1"),
                   str(tmp_path / "job-link"), str(other)):
        with pytest.raises(UsageError, match="resource_meta names no test job directory"):
            checked_job_dir(forged, named, "test job directory")


def test_job_files_are_written_whole(tmp_path: Path) -> None:
    from connector_cli.sdk.job_dirs import write_json

    target = tmp_path / "status.json"
    write_json(target, {"b": 1, "a": [2]})
    write_json(target, {"phase": "done"})
    assert json.loads(target.read_text()) == {"phase": "done"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]
