"""The Kubernetes objects the Helm chart renders for the production layout
(tests/fixtures/helm/host-local.yaml: the scaled Deployment and the one-replica
StatefulSet of the local-job connectors): workloads, their containers and what
`flyte-connector serve` makes of each container's args and environment."""

from __future__ import annotations

import os
from typing import Any

import click

from tests.helpers.helm import render

DEPLOYED = "host-local"

SCALED, LOCAL = "flyte-connector", "flyte-connector-local"
# Keys of the backend's connector plugin config (flyteplugins .../webapi/connector/config.go:
# Config and Deployment json tags) and the RPC names it looks up in `timeouts` (client.go,
# plugin.go). A misspelt key is silently ignored by the backend, so spell-check them here.
PLUGIN_KEYS = {"webApi", "resourceConstraints", "defaultConnector", "connectors",
               "connectorForTaskTypes", "supportedTaskTypes", "pollInterval"}
DEPLOYMENT_KEYS = {"endpoint", "insecure", "defaultServiceConfig", "timeouts", "defaultTimeout"}
TIMEOUT_KEYS = {"CreateTask", "GetTask", "DeleteTask", "ListConnectors"}
WORKLOAD_KINDS = {SCALED: "Deployment", LOCAL: "StatefulSet"}


def serve_command() -> click.Command:
    from connector_cli.cli import cli

    return cli.get_command(click.Context(cli), "serve")


def manifests() -> dict[str, list[dict[str, Any]]]:
    """Every object the chart renders for the production layout, by kind."""
    return render(DEPLOYED)


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
    """The daemon's container (additionalContainers may sit beside it)."""
    containers = [c for c in pod_spec(name)["containers"] if c["name"] == "connector"]
    assert len(containers) == 1
    return containers[0]


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
    """The container's environment (plain values only)."""
    return {e["name"]: str(e["value"]) for e in c.get("env", []) if "value" in e}


def deployed_params(name: str = SCALED) -> dict[str, Any]:
    c = container(name)
    return serve_params(c.get("args", []), container_env(c))
