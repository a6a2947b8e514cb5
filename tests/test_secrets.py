"""Secrets: where a local run gets them (run/secret_sources.py), the connection a call
receives (sdk/secrets.py), and the masker (masking.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flyteidl2.core.tasks_pb2 import TaskTemplate
from google.protobuf import json_format

from connector_cli.errors import UsageError
from connector_cli.masking import SecretMasker
from connector_cli.run.secret_sources import collect_secrets, connection_for, read_secrets_file


def test_secrets_sources_and_precedence(tmp_path: Path) -> None:
    dotenv = tmp_path / "secrets.env"
    dotenv.write_text("# comment\nexport token='from-file'\nPASSWORD = \"p@ss word\"\n\n")
    as_json = tmp_path / "secrets.json"
    as_json.write_text('{"token": "from-json", "port": 5432}')
    env = {"FLYTE_SECRET_API_KEY": "env-key", "FLYTE_SECRET_token": "env-token", "HOME": "/x"}
    found = collect_secrets(["token=from-flag=with=equals"], [dotenv, as_json], env)
    assert found == {"api_key": "env-key", "token": "from-flag=with=equals",
                     "PASSWORD": "p@ss word", "port": "5432"}
    assert read_secrets_file(dotenv) == {"token": "from-file", "PASSWORD": "p@ss word"}


def test_secret_errors_never_echo_values(tmp_path: Path) -> None:
    bad = tmp_path / "bad.env"
    bad.write_text("GOOD=1\nthis line holds hunter2secret\n")
    with pytest.raises(UsageError) as err:
        read_secrets_file(bad)
    assert "line 2" in str(err.value) and "hunter2" not in str(err.value)
    with pytest.raises(UsageError) as err:
        collect_secrets(["hunter2secret"])
    assert "hunter2" not in str(err.value)


def test_connection_follows_the_templates_custom_secrets_and_configs() -> None:
    template = json_format.ParseDict(
        {"type": "job", "custom": {"secrets": {"api_key": "prod-key"}, "configs": {"region": "eu"}}},
        TaskTemplate(),
    )
    conn = connection_for(template, {"prod-key": "s3cr3t-value"})
    assert conn.secrets == {"prod-key": "s3cr3t-value", "api_key": "s3cr3t-value"}
    assert conn.configs == {"region": "eu"}
    assert conn.masked() == {"secrets": {"api_key": "****", "prod-key": "****"}, "configs": {"region": "eu"}}
    with pytest.raises(UsageError, match=r"needs secret 'prod-key' \(for 'api_key'\).*FLYTE_SECRET_PROD_KEY$"):
        connection_for(template, {})


def test_the_variable_the_hint_names_for_a_dashed_secret_works() -> None:
    template = json_format.ParseDict({"type": "job", "custom": {"secrets": {"api_key": "prod-key"}}},
                                     TaskTemplate())
    with pytest.raises(UsageError) as err:
        connection_for(template, {})
    variable = str(err.value).rsplit(" ", 1)[-1]
    assert variable == "FLYTE_SECRET_PROD_KEY"
    found = collect_secrets(environ={variable: "from-env", "FLYTE_SECRET_Mixed_Name": "m"})
    assert connection_for(template, found).secrets["api_key"] == "from-env"
    mixed = json_format.ParseDict({"type": "job", "custom": {"secrets": {"k": "Mixed-Name"}}}, TaskTemplate())
    assert connection_for(mixed, found).secrets["k"] == "m"


def test_masker_hides_values_in_text_and_data() -> None:
    masker = SecretMasker(["s3cr3t-value", "abc"])
    assert masker.text("key s3cr3t-value, abc") == "key ****, abc"
    assert masker.data({"a": ["x s3cr3t-value"], "s3cr3t-value": 1}) == {"a": ["x ****"], "****": 1}
