"""The Kubernetes manifests under deploy/kubernetes: objects, workloads, their containers and
what `flyte-connector serve` makes of each container's args and environment."""

from __future__ import annotations

import os
from typing import Any

import click
import yaml

from tests.conftest import REPO

K8S = REPO / "deploy" / "kubernetes"

SCALED, LOCAL = "flyte-connector", "flyte-connector-local"
WORKLOAD_KINDS = {SCALED: "Deployment", LOCAL: "StatefulSet"}


def serve_command() -> click.Command:
    from connector_cli.cli import cli

    return cli.get_command(click.Context(cli), "serve")


def manifests() -> dict[str, list[dict[str, Any]]]:
    """Every Kubernetes object under deploy/kubernetes, by kind."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict) and doc.get("kind"), f"{path.name}: not an object"
            found.setdefault(doc["kind"], []).append({**doc, "__file__": path.name})
    return found


def one(kind: str) -> dict[str, Any]:
    objects = manifests()[kind]
    assert len(objects) == 1, f"expected one {kind}, found {len(objects)}"
    return objects[0]


def named(kind: str, name: str) -> dict[str, Any]:
    found = [o for o in manifests().get(kind, []) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def workload(name: str) -> dict[str, Any]:
    """The Deployment (scaled) or StatefulSet (local-job connectors) called `name`."""
    return named(WORKLOAD_KINDS[name], name)


def pod_spec(name: str) -> dict[str, Any]:
    return workload(name)["spec"]["template"]["spec"]


def container(name: str = SCALED) -> dict[str, Any]:
    containers = pod_spec(name)["containers"]
    assert len(containers) == 1
    return containers[0]


def generated_config_maps() -> dict[str, dict[str, str]]:
    """The ConfigMaps kustomization.yaml generates, as name -> data (literals only)."""
    found = {}
    for generator in one("Kustomization").get("configMapGenerator", []):
        assert set(generator) <= {"name", "literals", "options"}, "only literals are read here"
        found[generator["name"]] = dict(lit.split("=", 1) for lit in generator["literals"])
    return found


def serve_params(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """What `flyte-connector serve` makes of the container's args and environment."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("FLYTE_CONNECTOR_")}
    os.environ.update(env)
    try:
        # Under the group's context, as the CLI runs it: a parentless context would make
        # click cache `serve`'s help option without the group's `-h`.
        from connector_cli.cli import cli

        parent = click.Context(cli, info_name="flyte-connector", **cli.context_settings)
        ctx = serve_command().make_context("serve", list(args), parent=parent)
        return dict(ctx.params)
    finally:
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(saved)


def container_env(c: dict[str, Any]) -> dict[str, str]:
    """The container's environment, ConfigMap references resolved against the generator."""
    config_maps = generated_config_maps()
    env = {}
    for entry in c.get("env", []):
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
        elif "configMapKeyRef" in entry.get("valueFrom", {}):
            ref = entry["valueFrom"]["configMapKeyRef"]
            assert not ref.get("optional"), f"{entry['name']}: a missing ConfigMap must stop the pod"
            assert ref["key"] in config_maps.get(ref["name"], {}), f"{entry['name']}: {ref}"
            env[entry["name"]] = config_maps[ref["name"]][ref["key"]]
    return env


def deployed_params(name: str = SCALED) -> dict[str, Any]:
    c = container(name)
    return serve_params(c.get("args", []), container_env(c))
