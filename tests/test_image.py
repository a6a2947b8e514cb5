"""Installable and imageable without a package index or a Docker engine.

`make dist` builds wheels of the core and each bundled plugin; they install into a fresh
virtual environment laid out as the image's (`/opt/flyte-connector`, owned by the image's
user) and `flyte-connector list` runs there as that user. The Dockerfile's build arguments
reach its `pip install` line (its RUN script runs here with pip's arguments printed), and
the derived-image recipe (deploy/docker/plugins.Dockerfile) runs its steps as uid 65532
in that environment, installing a team's wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from packaging.requirements import Requirement

from tests.conftest import FIXTURE_DISTS, REPO, cli_env
from tests.helpers.dockerfile import build_arg, final_stage, run_commands, stage_env, stages

PLUGINS = sorted(p.parent.name for p in REPO.glob("plugins/*/pyproject.toml"))
RECIPE = REPO / "deploy" / "docker" / "plugins.Dockerfile"
VENV = "opt/flyte-connector"


def user_of_image() -> tuple[int, int]:
    user = [rest for op, rest in final_stage() if op == "USER"][-1]
    uid, _, gid = user.partition(":")
    return int(uid), int(gid or uid)


def as_image_user(root: Path, command: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """`sh -c command` as the image's user, with the image's environment (PATH to the
    venv, HOME and TMPDIR, pip settings) and the RUN's build arguments in `extra`."""
    uid, gid = user_of_image()
    env = {k: v for k, v in stage_env(final_stage()).items() if "$" not in v}
    home = root / "tmp"
    env.update(PATH=f"{root / VENV / 'bin'}:/usr/bin:/bin", HOME=str(home), TMPDIR=str(home),
               LANG="C.UTF-8", **extra)
    argv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "sh", "-c", command]
    return subprocess.run(argv, env=env, cwd=home, timeout=600, capture_output=True, text=True)


def image_python() -> str:
    """A Python 3.10+ every user can run, as the image's /usr/local/bin/python (the one
    running the tests may live under a private home directory)."""
    for candidate in ("/usr/local/bin/python3", "/usr/bin/python3"):
        if not os.access(candidate, os.X_OK):
            continue
        check = "import sys, venv, ensurepip; print(sys.version_info >= (3, 10))"
        done = subprocess.run([candidate, "-c", check], capture_output=True, text=True,
                              timeout=60)
        if done.stdout.strip() == "True":
            return candidate
    pytest.skip("no system Python 3.10+ with venv for the image's user")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    built = subprocess.run(["make", "-s", "dist", f"DIST={dist}"], cwd=REPO, timeout=300,
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    return dist


@pytest.fixture(scope="module")
def image_root(wheels: Path) -> Iterator[Path]:
    """A directory laid out as the image: the wheels installed into <root>/opt/flyte-connector
    (dependencies from the package index, as `pip install` gets them), owned by the image's
    user as the Dockerfile's `COPY --chown` makes it; <root>/tmp is its HOME and TMPDIR."""
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to run steps as the image's user")
    root = Path(tempfile.mkdtemp(prefix="image-"))
    try:
        root.chmod(0o755)
        (root / "tmp").mkdir(mode=0o1777)
        (root / "tmp").chmod(0o1777)
        venv = root / VENV
        subprocess.run([image_python(), "-m", "venv", str(venv)], check=True, timeout=120)
        env = cli_env(PIP_DISABLE_PIP_VERSION_CHECK="1")
        env.pop("PYTHONPATH", None)
        installed = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
             *map(str, sorted(wheels.glob("*.whl")))], env=env, cwd=root, timeout=600,
            capture_output=True, text=True)
        assert installed.returncode == 0, installed.stdout + installed.stderr
        uid, gid = user_of_image()
        subprocess.run(["chown", "-R", f"{uid}:{gid}", str(root / "opt")], check=True)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_make_dist_builds_a_wheel_for_the_core_and_each_plugin(wheels: Path) -> None:
    names = sorted(p.name.split("-")[0] for p in wheels.glob("*.whl"))
    assert names == ["flyte_connector", *(f"flyte_connector_{name}" for name in PLUGINS)]


def test_the_wheels_install_into_a_fresh_venv_and_list_runs_as_the_image_user(
        image_root: Path) -> None:
    listed = as_image_user(image_root, "flyte-connector list --json")
    assert listed.returncode == 0, listed.stderr
    sources = {c["source"]["distribution"] for c in json.loads(listed.stdout)["connectors"]}
    assert sources == {f"flyte-connector-{name}" for name in PLUGINS}
    where = as_image_user(image_root, "python -c 'import connector_cli; print(connector_cli.__file__)'")
    assert where.stdout.startswith(str(image_root / VENV)), where.stdout + where.stderr


def team_wheel(dest: Path) -> Path:
    """A team's connector package as a wheel (the fc-good fixture distribution)."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "-w", str(dest),
                    str(FIXTURE_DISTS / "fc-good")], check=True, timeout=120,
                   capture_output=True, cwd=dest)
    return next(dest.glob("fc_good-*.whl"))


def test_the_derived_image_recipe_runs_as_the_image_user(image_root: Path) -> None:
    recipe = stages(RECIPE)[-1]
    assert not [rest for op, rest in recipe if op == "USER"], "the recipe must not need root"
    assert Requirement("flyteplugins-databricks==2.12.1") in map(
        Requirement, build_arg("REQUIREMENTS", RECIPE).split())
    wheel = team_wheel(image_root / "tmp")
    wheel.chmod(wheel.stat().st_mode | stat.S_IROTH)
    [command] = run_commands(recipe)
    uid, gid = user_of_image()
    subprocess.run(["chown", "-R", "0:0", str(image_root / "opt")], check=True)
    try:  # what the issue saw: a root-owned venv refuses the image's user
        refused = as_image_user(image_root, command, REQUIREMENTS=str(wheel))
    finally:
        subprocess.run(["chown", "-R", f"{uid}:{gid}", str(image_root / "opt")], check=True)
    assert refused.returncode != 0 and "Permission denied" in refused.stdout + refused.stderr
    done = as_image_user(image_root, command, REQUIREMENTS=str(wheel))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Successfully installed fc-good-1.2.3" in done.stdout
    assert done.stdout.count("fc-good 1.2.3") == 3, done.stdout  # its three entry points


def test_the_venv_belongs_to_the_image_user() -> None:
    uid, gid = user_of_image()
    copies = [rest for op, rest in final_stage() if op == "COPY" and "--from=build" in rest]
    assert copies and all(f"--chown={uid}:{gid}" in rest for rest in copies)


def pip_arguments(tmp: Path, **args: str) -> list[str]:
    """What the build stage's RUN hands `pip install`, for these build arguments: the RUN
    script runs in a copy of the build context with pip replaced by printing its argv."""
    tmp.mkdir()
    for name in ("plugins", "wheels"):
        (tmp / name).symlink_to(REPO / name)
    [script] = [c for c in run_commands(stages()[0]) if "pip install" in c]
    script = script.replace("python -m venv /opt/flyte-connector", "true")
    script = script.replace("/opt/flyte-connector/bin/pip install", "printf '%s\\n'")
    env = {name: build_arg(name) for name in ("PLUGINS", "EXTRAS", "REQUIREMENTS")}
    env.update(args, PATH="/usr/bin:/bin")
    done = subprocess.run(["sh", "-c", script], env=env, cwd=tmp, capture_output=True,
                          text=True, timeout=30, check=True)
    return done.stdout.splitlines()


def test_build_arguments_reach_the_pip_install_line(tmp_path: Path) -> None:
    defaults = pip_arguments(tmp_path / "defaults")
    assert defaults == [".[uvloop]", *(f"./plugins/{name}" for name in PLUGINS)]
    c0 = pip_arguments(tmp_path / "c0", PLUGINS="./plugins/sql flyteplugins-snowflake==2.12.1",
                       EXTRAS="flyte", REQUIREMENTS="flyteplugins-databricks==2.12.1 flytekit "
                       "wheels/README.md")
    assert c0 == [".[uvloop,flyte]", "./plugins/sql", "flyteplugins-snowflake==2.12.1",
                  "flyteplugins-databricks==2.12.1", "flytekit", "wheels/README.md"]
    for argument in c0[2:5]:
        Requirement(argument)  # each a valid requirement, none prefixed with ./
