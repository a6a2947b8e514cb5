"""The resource_meta signing key: a shared, required Secret wherever a signing connector
runs (issue 15), and no Secret at all where none does (issue 24: a pod must not wait in
ContainerCreating for a key nothing uses).

A scaled Deployment whose replicas generated keys of their own would refuse each other's
job handles, so every replica of a workload that signs must get the same key file, from a
Secret mounted read-only and not optional. The chart generates that Secret once and reads
it back on upgrades (`lookup`), so tasks in flight keep verifying.
"""

from __future__ import annotations

import base64
from pathlib import PurePosixPath
from typing import Any

import pytest

from tests.helpers.deploy_manifests import LOCAL, SCALED, container, deployed_params, pod_spec
from tests.helpers.helm import CHART, render


def meta_key_secret(name: str) -> tuple[str, dict]:
    """The key file the workload's daemon reads and the Secret volume it lives on."""
    key_file = deployed_params(name)["meta_key_file"]
    assert key_file, f"{name}: no --meta-key-file; replicas would not share a key"
    c = container(name)
    path = PurePosixPath(key_file)
    mounts = [m for m in c["volumeMounts"] if path.is_relative_to(m["mountPath"])]
    assert len(mounts) == 1, f"{name}: {key_file} is on {len(mounts)} mounts"
    assert mounts[0].get("readOnly") is True
    volume = next(v for v in pod_spec(name)["volumes"] if v["name"] == mounts[0]["name"])
    assert "secret" in volume, f"{name}: the meta key must come from a Secret"
    return key_file, volume["secret"]


def signing_task_types(name: str) -> set[str]:
    """Task types of the workload's plugins whose connectors sign resource_meta."""
    from connector_cli.cli.options import discovery_config
    from connector_cli.discovery import discover
    from connector_cli.sdk.registry import ConnectorRegistry

    params = deployed_params(name)
    config = discovery_config(params["modules"], params["plugins"])
    registry = ConnectorRegistry()
    assert not discover(registry, config.modules, config.plugins).failed
    return {r.category[0] for r in registry.registrations() if r.connector.sign_resource_meta}


def test_the_local_daemon_signs_with_a_key_from_a_required_read_only_secret() -> None:
    assert signing_task_types(LOCAL), "shell and sql sign their resource_meta"
    _key_file, secret = meta_key_secret(LOCAL)
    assert not secret.get("optional"), "a missing key Secret must stop the pod"
    assert int(secret.get("defaultMode", 0o644)) & 0o007 == 0, "not world-readable"
    assert deployed_params(LOCAL)["previous_meta_key_file"] is None


def test_a_workload_with_no_signing_connector_gets_no_key() -> None:
    assert not signing_task_types(SCALED)
    assert deployed_params(SCALED)["meta_key_file"] is None
    assert not [v for v in pod_spec(SCALED)["volumes"] if v["name"] == "meta-key"]


@pytest.mark.parametrize("values", ["upstream-defaults", "c0-style"])
def test_no_key_secret_without_a_signing_connector(values: str) -> None:
    objects = render(values)
    assert "StatefulSet" not in objects
    assert not [s for s in objects.get("Secret", []) if "meta-key" in s["metadata"]["name"]]
    [deployment] = objects["Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in args if a.startswith("--meta-key-file")]


def key_secret(objects: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    [secret] = [s for s in objects["Secret"] if s["metadata"]["name"].endswith("-meta-key")]
    return secret


def test_the_generated_key_is_kept_across_upgrades_and_uninstalls() -> None:
    secret = key_secret(render("host-local"))
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(base64.b64decode(secret["data"]["key"])) >= 32
    template = (CHART / "templates" / "secrets.yaml").read_text()
    assert 'lookup "v1" "Secret"' in template and "toYaml $existing.data" in template


def test_both_workloads_share_the_key_when_the_deployment_signs_too() -> None:
    objects = render("everything-on")
    names = set()
    for workload in (*objects["Deployment"], *objects["StatefulSet"]):
        pod = workload["spec"]["template"]["spec"]
        names |= {v["secret"]["secretName"] for v in pod["volumes"] if v["name"] == "meta-key"}
    assert names == {key_secret(objects)["metadata"]["name"]}


def test_an_existing_key_secret_is_used_and_none_generated() -> None:
    objects = render("host-local", "metaKey.existingSecret=team-key")
    assert not [s for s in objects.get("Secret", []) if "meta-key" in s["metadata"]["name"]]
    [local] = objects["StatefulSet"]
    volumes = {v["name"]: v for v in local["spec"]["template"]["spec"]["volumes"]}
    assert volumes["meta-key"]["secret"]["secretName"] == "team-key"


def test_a_connections_rule_narrowed_by_project_makes_the_deployment_sign() -> None:
    """The daemon wraps such a task's resource_meta in an envelope signed with the key, so
    every replica needs the same one; broad rules alone change nothing."""
    narrowed = render("", "connections.enabled=true", "connections.rules[0].task_type=x",
                      "connections.rules[0].project=analytics")
    [deployment] = narrowed["Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--meta-key-file=/etc/flyte-connector/meta-key/key" in args
    key_secret(narrowed)
    broad = render("", "connections.enabled=true", "connections.rules[0].task_type=x")
    assert not [s for s in broad.get("Secret", []) if "meta-key" in s["metadata"]["name"]]
