"""Every error a newcomer meets is one helpful line, with the right exit code (issue 14).

The CLI runs as a subprocess, so what gRPC's C core would print on stderr is seen too.
"""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import pytest

from tests.helpers.daemon_process import Daemon, run_cli
from tests.helpers.pki import make_pki

SQUARES = "plugins/sql/examples/squares.yaml"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_tls_mistakes_are_one_line_and_the_daemon_log_stays_json(pki: dict[str, Path]) -> None:
    daemon = Daemon("--tls-cert", str(pki["server"]), "--tls-key", str(pki["server_key"]),
                    FLYTE_CONNECTOR_LOG_FORMAT="json")
    address = daemon.wait_ready()
    try:
        untrusted = run_cli("list", "--endpoint", address, "--tls")
        plaintext = run_cli("list", "--endpoint", address)
        trusted = run_cli("list", "--endpoint", address, "--tls-ca", str(pki["ca"]), "--json")
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
        code, log = daemon.finish()
    assert (untrusted.returncode, error_lines(untrusted.stderr)) == (1, [
        (f"Error: cannot reach the connector daemon at {address}: the daemon's TLS certificate "
        "is not trusted (unable to get local issuer certificate); pass its CA with --tls-ca FILE")
    ])
    assert (plaintext.returncode, error_lines(plaintext.stderr)) == (1, [
        (f"Error: cannot reach the connector daemon at {address}: the daemon closed the "
        "connection: if it serves TLS, add --tls (or --tls-ca FILE)")
    ])
    assert trusted.returncode == 0, trusted.stderr
    assert code == 0
    for line in log.splitlines():
        assert json.loads(line)["message"], line  # no `I1129 ... ssl_transport_security.cc`


def test_an_unreachable_daemon_asks_whether_serve_is_running() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        result = run_cli("list", "--endpoint", f"127.0.0.1:{port}")
    assert (result.returncode, error_lines(result.stderr)) == (1, [
        (f"Error: cannot reach the connector daemon at 127.0.0.1:{port}: connection refused: "
        "is `flyte-connector serve` running there?")
    ])


@pytest.mark.parametrize("command", [["list"], ["test", SQUARES]])
def test_an_endpoint_url_is_a_usage_error(command: list[str]) -> None:
    result = run_cli(*command, "--endpoint", "http://localhost:8000")
    assert result.returncode == 2
    assert error_lines(result.stderr)[-1] == (
        "Error: Invalid value for '--endpoint' (env var: 'FLYTE_CONNECTOR_ENDPOINT'): "
        "'http://localhost:8000' has a URL scheme; drop 'http://' and give HOST:PORT, "
        "e.g. localhost:8000")


def test_a_missing_attribute_is_a_name_that_does_not_exist() -> None:
    for command in (["list"], ["serve", "--port", "0", "--metrics-port", "0"]):
        result = run_cli(*command, "--plugins", "none", "-m", "json:Nope")
        assert (result.returncode, error_lines(result.stderr)) == (2, [
            ("Error: module 'json' has no attribute 'Nope' (check the name, and that it is "
            "installed or importable)")
        ]), command


def test_a_broken_module_stops_serve_with_its_error_said_once(tmp_path: Path) -> None:
    (tmp_path / "broken_here.py").write_text("raise RuntimeError('no database URL')\n")
    result = run_cli("serve", "--port", "0", "--metrics-port", "0", "--plugins", "none",
                     "-m", "broken_here", PYTHONPATH=str(tmp_path))
    assert (result.returncode, error_lines(result.stderr)) == (1, [
        ("Error: cannot start: importing 'broken_here' raised RuntimeError: no database URL; "
        "fix or drop the --modules entry")
    ])


@pytest.mark.parametrize(("name", "text", "line"), [
    ("in.yaml", "limit: 4\n  label: [x\n",
     "is not valid YAML: mapping values are not allowed here (line 2, column 8)"),
    ("in.json", '{"limit": 4,\n "label" x}\n',
     "is not valid JSON: Expecting ':' delimiter (line 2, column 10)"),
])
def test_a_malformed_inputs_file_gets_its_format_error_alone(
    tmp_path: Path, name: str, text: str, line: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    result = run_cli("test", SQUARES, "--inputs", str(path))
    assert (result.returncode, error_lines(result.stderr)) == (
        2, [f"Error: inputs file {str(path)!r} {line}"])


@pytest.mark.parametrize(("name", "text", "line"), [
    ("task.yaml", "type: sql\ncustom:\n  query: x\n  - a\n",
     "is not valid YAML: expected <block end>, but found '-' (line 4, column 3)"),
    ("task.yml", "type: sql\ncustom: {query: [x}\n",
     "is not valid YAML: expected ',' or ']', but got '}' (line 2, column 19)"),
    ("task.json", '{"type": "sql",\n}',
     "is not valid JSON: Expecting property name enclosed in double quotes (line 2, column 1)"),
])
def test_a_malformed_task_file_gets_its_format_error_alone(
    tmp_path: Path, name: str, text: str, line: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    result = run_cli("test", str(path))
    assert (result.returncode, error_lines(result.stderr)) == (
        2, [f"Error: task template {str(path)!r} {line}"])


def test_a_remote_connectors_multi_line_error_is_kept_whole(tmp_path: Path) -> None:
    task = tmp_path / "boom.yaml"
    task.write_text("type: boom\n")
    daemon = Daemon()
    address = daemon.wait_ready()
    try:
        text = run_cli("test", str(task), "--endpoint", address, "--progress", "plain")
        as_json = run_cli("test", str(task), "--endpoint", address, "--json")
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.finish()
    reason = ("Failing.create failed: INTERNAL: create for task type 'boom' failed: RuntimeError: "
              "login refused for key None\nsecond line")
    assert text.returncode == 1
    assert text.stderr == f"Error: {reason} (the daemon's log has the traceback)\n"
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["error"] == reason


def test_a_plain_exception_names_the_method_and_connector_that_raised_it() -> None:
    from connector_cli.errors import TransientError, UsageError, describe_failure

    line = describe_failure(KeyError("api_token"), "JobsvcConnector.create")
    assert line.startswith("JobsvcConnector.create failed: KeyError: 'api_token' (a key it looked up is "
                           "missing: a secret or config keyword argument")
    assert describe_failure(UsageError("region 'mars' is unknown"), "Jobsvc.create") == \
        "Jobsvc.create failed: region 'mars' is unknown"
    assert describe_failure(TransientError("HTTP 503"), "Jobsvc.get") == \
        "Jobsvc.get failed (transient upstream error): HTTP 503"
