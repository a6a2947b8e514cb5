"""connector_cli.sdk.job_env: the text and the variable an input has for a command (the
shell and Slurm plugins' shared rule)."""

from __future__ import annotations

import datetime as dt

import pytest

from connector_cli.sdk.job_env import env_name, input_text


class FileLike:
    """Anything with a `uri`, as `FlyteFile` and `FlyteDirectory` have."""

    def __init__(self, uri: str) -> None:
        self.uri = uri


@pytest.mark.parametrize("value, text", [
    ("plain $(text)", "plain $(text)"),
    (FileLike("file:///data/in.csv"), "/data/in.csv"),
    (FileLike("s3://bucket/in.csv"), "s3://bucket/in.csv"),
    (dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc), "2024-05-06T07:08:09+00:00"),
    (dt.date(2024, 5, 6), "2024-05-06"),
    (dt.timedelta(minutes=1, milliseconds=500), "60.5"),
    (3, "3"), (True, "true"), (None, "null"),
    ({"b": [1, 2.5], "a": "x"}, '{"a":"x","b":[1,2.5]}'),
])
def test_input_text_is_how_a_command_sees_an_input(value: object, text: str) -> None:
    assert input_text(value) == text


@pytest.mark.parametrize("name, variable", [
    ("x", "FLYTE_INPUT_X"), ("max-rows", "FLYTE_INPUT_MAX_ROWS"), ("a.b c", "FLYTE_INPUT_A_B_C"),
])
def test_env_name_is_the_variable_of_an_input(name: str, variable: str) -> None:
    assert env_name(name) == variable
