"""Tests for the hello connector (hello_connector.py) with flyte-connector's testing kit.

The fixtures `run_connector` and `connector_daemon` come from the pytest plugin that
installing flyte-connector adds. Run: pytest docs/examples/test_hello_connector.py
"""

from __future__ import annotations

from pathlib import Path

from hello_connector import HelloConnector

from connector_cli.testing import make_template, run_task

HERE = Path(__file__).parent
GREET = make_template("hello", inputs={"name": str, "seconds": float},
                      outputs={"greeting": str})


async def test_it_greets_once_the_job_is_done(run_connector) -> None:
    result = await run_connector(GREET, {"name": "Ada", "seconds": 0.2},
                                 connector=HelloConnector())
    assert result.status == "succeeded", result.error
    assert result.phases[0] == "RUNNING" and result.phases[-1] == "SUCCEEDED"
    assert result.output_values == {"greeting": "Hello, Ada!"}
    assert result.log_links[0].uri == "https://example.com/hello/Ada"


async def test_a_job_that_outlasts_the_timeout_is_deleted(run_connector) -> None:
    result = await run_connector(GREET, {"name": "Bo", "seconds": 60},
                                 connector=HelloConnector(), timeout=0.2)
    assert (result.status, result.deleted) == ("timed_out", True)


async def test_the_example_files_run_through_a_real_daemon(connector_daemon) -> None:
    daemon = await connector_daemon(HelloConnector())
    result = await run_task(daemon, HERE / "hello_task.yaml", HERE / "hello_inputs.json",
                            poll_interval=0.5)
    assert result.output_values == {"greeting": "Hello, Ada!"}
