"""The `flyte-connector` CLI: `list`, conventions, errors and start-up cost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector_cli import __version__
from connector_cli.cli import cli
from tests.conftest import REPO, cli_env, run_python

GOOD_AND_BROKEN = "good-module,good-class broken-raises"


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in list(__import__("os").environ):
        if name.startswith("FLYTE_CONNECTOR_"):
            monkeypatch.delenv(name)
    return CliRunner()


def test_help_and_version(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0 and "list" in result.output
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    result = runner.invoke(cli, ["list", "--help"])
    assert "FLYTE_CONNECTOR_MODULES" in result.output and "FLYTE_CONNECTOR_PLUGINS" in result.output


def test_list_table_shows_connectors_and_failures(runner: CliRunner, plugin_path: Path) -> None:
    result = runner.invoke(cli, ["list", "--plugins", GOOD_AND_BROKEN], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    out = result.output
    assert "Connectors" in out and "Failed plugins" in out
    assert "good v0, good v1" in out and "fc-good 1.2.3" in out
    assert "ClassConnector" in out and "by-class v0" in out
    assert "broken-raises" in out and "RuntimeError: database URL is not configured" in out


def test_list_json(runner: CliRunner, plugin_path: Path) -> None:
    result = runner.invoke(cli, ["list", "--json", "--plugins", "good-module"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [c["name"] for c in data["connectors"]] == ["Good"]
    assert data["connectors"][0]["source"]["distribution"] == "fc-good"
    assert data["failed"] == []
    result = runner.invoke(cli, ["list", "--json", "--plugins", GOOD_AND_BROKEN])
    assert result.exit_code == 1
    assert json.loads(result.output)["failed"][0]["plugin"] == "broken-raises"


def test_options_come_from_environment_variables(runner: CliRunner, plugin_path: Path) -> None:
    env = {"FLYTE_CONNECTOR_PLUGINS": "none", "FLYTE_CONNECTOR_MODULES": "fc_good.registers, fc_good.classes:instance",
           "FLYTE_CONNECTOR_JSON": "1"}
    result = runner.invoke(cli, ["list"], env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [c["name"] for c in data["connectors"]] == ["Good", "Instance"]
    assert {c["source"]["kind"] for c in data["connectors"]} == {"module"}


def test_missing_module_is_one_line_and_exit_2(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["list", "--plugins", "none", "--modules", "no_such_module_xyz"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: module 'no_such_module_xyz' not found (check the name, and that it is installed or importable)"
    ]
    result = runner.invoke(cli, ["list", "--plugins", "not-a-plugin"])
    assert result.exit_code == 2
    assert "no installed plugin named 'not-a-plugin'" in result.output


def test_modules_resolve_from_the_current_directory(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_local_conn.py").write_text((REPO / "docs" / "examples" / "hello_connector.py").read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    result = runner.invoke(cli, ["list", "--plugins", "none", "-m", "my_local_conn", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["connectors"][0]["name"] == "Hello"


def test_no_connectors_message(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["list", "--plugins", "none"])
    assert result.exit_code == 0
    assert "No connectors found" in result.output


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector_cli", *args],
        capture_output=True, text=True, timeout=60, env=cli_env(**env), cwd=REPO,
    )


def test_debug_shows_the_traceback_otherwise_one_line() -> None:
    plain = run_cli("list", "--plugins", "none", "-m", "no_such_module_xyz")
    assert plain.returncode == 2
    assert plain.stderr.strip().splitlines() == [
        "Error: module 'no_such_module_xyz' not found (check the name, and that it is installed or importable)"
    ]
    debug = run_cli("--debug", "list", "--plugins", "none", "-m", "no_such_module_xyz")
    assert debug.returncode == 2
    assert "Traceback (most recent call last)" in debug.stderr
    assert "PluginNotFound" in debug.stderr
    debug_env = run_cli("list", "--plugins", "none", "-m", "no_such_module_xyz", FLYTE_CONNECTOR_DEBUG="1")
    assert "Traceback (most recent call last)" in debug_env.stderr


def test_unexpected_errors_become_one_line_with_a_hint() -> None:
    from connector_cli.cli.errors import as_cli_error
    from connector_cli.errors import ConnectorNotFound, UsageError

    error = as_cli_error(KeyError("region"), debug=False)
    assert (error.message, error.exit_code) == (
        "unexpected KeyError: 'region' (run with --debug for the traceback)", 1)
    assert as_cli_error(UsageError("bad input"), debug=False).exit_code == 2
    assert as_cli_error(ConnectorNotFound("nope"), debug=False).message == "nope"


def test_entry_points_from_a_subprocess(installed_dists: Path) -> None:
    result = run_cli("list", "--json", PYTHONPATH=str(installed_dists), FLYTE_CONNECTOR_PLUGINS="fc-good")
    assert result.returncode == 0, result.stderr
    names = sorted(c["name"] for c in json.loads(result.stdout)["connectors"])
    assert names == ["ClassConnector", "Good", "Instance"]


HEAVY = ["grpc", "grpc.aio", "grpc_health", "grpc_reflection", "prometheus_client"]


@pytest.mark.parametrize("argv", [["--help"], ["list", "--plugins", "none"], ["list", "--json"]])
def test_help_and_list_do_not_import_the_server_machinery(argv: list[str], installed_dists: Path) -> None:
    # Flyte SDK plugins (flyteplugins-*, the `flyte` extra) import grpc themselves: the
    # check is about what our own code imports, so `list --json` loads every other plugin.
    code = (
        "import sys\n"
        "import importlib_metadata\n"
        "from connector_cli.cli import main\n"
        "argv = " + repr(argv) + "\n"
        "if argv == ['list', '--json']:\n"
        "    eps = importlib_metadata.entry_points(group='flyte.connectors')\n"
        "    argv += ['--plugins', ','.join(e.name for e in eps\n"
        "                                    if not e.value.startswith('flyteplugins.'))]\n"
        "try:\n"
        "    main(argv)\n"
        "except SystemExit:\n"
        "    pass\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('LOADED', loaded, 'protobuf' if 'google.protobuf' in sys.modules else '')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
        env=cli_env(PYTHONPATH=str(installed_dists)), cwd=REPO,
    )
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("LOADED []"), result.stdout + result.stderr
    if argv == ["--help"]:
        assert "protobuf" not in last


def test_short_options_parse_without_click_building_suggestions() -> None:
    """`-m x` is taken as the short option it is (click would first look it up as a long
    one, importing difflib for a suggestion list it throws away); a mistyped long option
    still gets its suggestion."""
    code = (
        "import sys\n"
        "from connector_cli.cli.serve_command import serve_command\n"
        "ctx = serve_command.make_context('serve', ['-m', 'a', '-m', 'b,c', '-mz'])\n"
        "print(ctx.params['modules'], 'difflib' in sys.modules)\n"
    )
    result = run_python(code)
    assert result.stdout.strip() == "('a', 'b', 'c', 'z') False", result.stderr
    typo = CliRunner().invoke(cli, ["serve", "--modlues", "x"])
    assert typo.exit_code == 2
    assert "No such option '--modlues'. Did you mean '--modules'?" in typo.output


def test_serve_that_cannot_start_leaves_garbage_collection_on() -> None:
    """Start-up runs with GC off; a start-up that fails turns it back on for the caller."""
    code = (
        "import gc\n"
        "from connector_cli.cli import cli\n"
        "try:\n"
        "    cli.main(['serve', '--plugins', 'none', '-m', 'no_such_module_q'],\n"
        "             standalone_mode=False)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, gc.isenabled())\n"
    )
    result = run_python(code)
    assert result.stdout.split() == ["CLIError", "True"], result.stdout + result.stderr


DEFERRED = ["grpc_health.v1.health", "grpc_reflection.v1alpha.reflection", "prometheus_client", "ctypes", "msgpack",
            "hashlib", "difflib", "encodings.idna", "connector_cli.signing",
            "connector_cli.literals"]


def test_serve_keeps_what_no_answer_needed_yet_off_its_start_up() -> None:
    """A daemon that served (and, with `--timeout`, stopped) without a request loaded none of
    the modules it defers to first use: start-up time and resident memory (docs/serve.md)."""
    from tests.helpers.flyte_support import free_port

    code = (
        "import atexit, sys\n"
        f"atexit.register(lambda: print('LOADED', [m for m in {DEFERRED!r} if m in sys.modules]))\n"
        "from connector_cli.cli import main\n"
        "main(['serve', '--host', '127.0.0.1', '--port', '0', '--metrics-port', "
        f"'{free_port()}', '--plugins', 'none', '-m', 'tests.fixtures.connectors.daemon_connectors', "
        "'--timeout', '1'])\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "LOADED []", result.stdout + result.stderr
