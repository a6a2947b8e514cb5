"""The Helm chart deploy/helm/flyte-connector under the real `helm` (lint, template) with
several values files: the flyteconnector chart's defaults, a c0 operator's file, the
production layout with the local-job connectors, and everything on. Each rendering is
parsed and checked: flyteconnector's values keep their meaning, and what it lacks
(serve options, metrics, headless Service, PDB, HPA, probes, Secrets) is there only when
asked. Skipped, with one line, where `helm` cannot be had (`make helm` builds it)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.helpers.deploy_manifests import DEPLOYMENT_KEYS, PLUGIN_KEYS, TIMEOUT_KEYS, serve_params
from tests.helpers.helm import CHART, VALUES, render, run_helm, values_files

FILES = values_files()


def objects_named(objects: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, Any]:
    return {o["metadata"]["name"]: o for o in objects.get(kind, [])}


def daemon(objects: dict[str, list[dict[str, Any]]], kind: str = "Deployment") -> dict[str, Any]:
    [workload] = objects[kind]
    return workload


def connector(workload: dict[str, Any]) -> dict[str, Any]:
    [c] = [c for c in workload["spec"]["template"]["spec"]["containers"]
           if c["name"] == "connector"]
    return c


def selects(selector: dict[str, str], workload: dict[str, Any]) -> bool:
    return selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()


def test_the_values_files_are_all_here() -> None:
    assert FILES == ["c0-style", "everything-on", "host-local", "upstream-defaults"]


@pytest.mark.parametrize("values", FILES)
def test_helm_lint_passes(values: str) -> None:
    out = run_helm("lint", str(CHART), "--strict", "-f", str(VALUES / f"{values}.yaml"))
    assert "1 chart(s) linted, 0 chart(s) failed" in out


@pytest.mark.parametrize("values", FILES)
def test_every_rendering_is_consistent(values: str) -> None:
    objects = render(values)
    workloads = [*objects["Deployment"], *objects.get("StatefulSet", [])]
    for workload in workloads:
        spec = workload["spec"]
        assert selects(spec["selector"]["matchLabels"], workload)
        pod = spec["template"]["spec"]
        c = connector(workload)
        params = serve_params(c["args"], {})  # the real serve command parses every argument
        assert c["command"] == ["flyte-connector", "serve"]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert params["port"] in ports.values()
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            action = c[probe].get("grpc") or c[probe]["tcpSocket"]
            assert action["port"] == params["port"], probe
        volumes = {v["name"] for v in pod["volumes"]}
        claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
        assert {m["name"] for m in c["volumeMounts"]} <= volumes | claims
        grace = params["grace_period"] + int(c["lifecycle"]["preStop"]["exec"]["command"][1])
        assert pod["terminationGracePeriodSeconds"] > grace
        assert c["livenessProbe"]["periodSeconds"] * c["livenessProbe"]["failureThreshold"] > grace
    secrets = set(objects_named(objects, "Secret"))
    for workload in workloads:
        for volume in workload["spec"]["template"]["spec"]["volumes"]:
            if volume["name"] in ("meta-key", "connector-secret") and (
                    "existingSecret" not in str(volume)):
                assert volume["secret"]["secretName"] in secrets, volume
            if volume["name"] == "connections":
                assert volume["configMap"]["name"] in objects_named(objects, "ConfigMap")
    for budget in objects.get("PodDisruptionBudget", []):
        picked = [w for w in workloads if selects(budget["spec"]["selector"]["matchLabels"], w)]
        assert [w["kind"] for w in picked] == ["Deployment"], "the budget selects the daemon"
    for service in objects["Service"]:
        assert [w for w in workloads if selects(service["spec"]["selector"], w)], service


def test_upstream_defaults_keep_their_meaning() -> None:
    upstream = yaml.safe_load((VALUES / "upstream-defaults.yaml").read_text())
    objects = render("upstream-defaults")
    deployment = daemon(objects)
    c = connector(deployment)
    assert deployment["metadata"]["name"] == "flyte-connector"
    assert deployment["spec"]["replicas"] == upstream["replicaCount"]
    assert c["image"] == "ghcr.io/flyteorg/flyte-connectors:py3.12-v2.3.6"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["resources"] == upstream["resources"]
    assert {"name": "connector-grpc", "containerPort": 8000, "protocol": "TCP"} in c["ports"]
    readiness = c["readinessProbe"]
    assert readiness["grpc"]["port"] == 8000 and readiness["periodSeconds"] == 3
    assert readiness["initialDelaySeconds"] == 1
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    service = objects_named(objects, "Service")["flyte-connector"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["metadata"]["annotations"] == upstream["service"]["annotations"]
    assert service["spec"]["ports"][0]["port"] == 8000
    assert service["spec"]["ports"][0]["targetPort"] == "connector-grpc"
    assert "flyte-connector" in objects_named(objects, "ServiceAccount")
    assert "ClusterRole" not in objects and "StatefulSet" not in objects
    assert "Secret" not in objects, "no connectorSecret data, no signing connector: no Secret"
    assert "HorizontalPodAutoscaler" not in objects


def test_a_c0_operators_values_file_works_as_it_is() -> None:
    values = yaml.safe_load((VALUES / "c0-style.yaml").read_text())
    objects = render("c0-style")
    deployment = daemon(objects)
    pod = deployment["spec"]["template"]["spec"]
    c = connector(deployment)
    assert deployment["metadata"]["name"] == "flyteconnector", "nameOverride keeps the names"
    assert {"flyteconnector", "flyteconnector-headless"} <= set(objects_named(objects, "Service"))
    assert deployment["spec"]["replicas"] == 3
    assert c["image"] == "registry.example.com/flyte-connector-c0:2.12.1"
    assert c["env"] == values["podEnv"]
    assert "--workers=64" in c["args"], "extraArgs reach the command line"
    assert serve_params(c["args"], {})["workers"] == 64
    assert not [a for a in c["args"] if a.startswith("--plugins")], "all installed, as c0"
    secret = objects_named(objects, "Secret")["flyteconnector"]
    assert secret["stringData"] == {"databricks_token": "flyte-connector-placeholder"}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/etc/secrets"] == "connector-secret"
    assert mounts["/var/secrets/google"] == "google-key"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["google-key"]["secret"]["secretName"] == "flyte-connector-google-key"
    assert [x["name"] for x in pod["containers"]] == ["connector", "log-shipper"]
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["affinity"] == values["affinity"]
    assert pod["priorityClassName"] == "high-priority"
    assert deployment["spec"]["template"]["metadata"]["labels"]["cost-center"] == "ml"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "true"
    account = objects_named(objects, "ServiceAccount")["flyteconnector"]
    assert account["metadata"]["annotations"] == values["serviceAccount"]["annotations"]
    assert account["imagePullSecrets"] == [{"name": "registry-credentials"}]
    role = objects_named(objects, "ClusterRole")["flyte-flyteconnector"]
    assert role["rules"][0]["resources"] == ["secrets"]
    binding = objects_named(objects, "ClusterRoleBinding")["flyte-flyteconnector"]
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"] == "flyteconnector"
    assert pod["automountServiceAccountToken"] is True, "rbac needs the token"
    for kind in objects.values():
        for obj in kind:
            assert obj["metadata"]["labels"]["team"] == "data-platform", obj["kind"]


def test_the_headless_service_serves_dns_round_robin() -> None:
    objects = render("upstream-defaults")
    headless = objects_named(objects, "Service")["flyte-connector-headless"]
    assert headless["spec"]["clusterIP"] == "None"
    assert selects(headless["spec"]["selector"], daemon(objects))
    assert [p["port"] for p in headless["spec"]["ports"]] == [8000]
    metrics = objects_named(objects, "Service")["flyte-connector-metrics"]
    assert [(p["name"], p["port"]) for p in metrics["spec"]["ports"]] == [("metrics", 9090)]
    assert "--metrics-port=9090" in connector(daemon(objects))["args"]


def test_host_local_connectors_only_when_enabled() -> None:
    objects = render("host-local")
    local = daemon(objects, "StatefulSet")
    assert local["spec"]["replicas"] == 1
    params = serve_params(connector(local)["args"], {})
    assert params["plugins"] == ("shell", "sql") or list(params["plugins"]) == ["shell", "sql"]
    claim = local["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    service = objects_named(objects, "Service")["flyte-connector-local"]
    assert selects(service["spec"]["selector"], local)
    assert not selects(service["spec"]["selector"], daemon(objects))
    assert serve_params(connector(daemon(objects))["args"], {})["plugins"] == ("none",)
    assert "replicas" not in daemon(objects)["spec"], "the HPA owns the count"
    [hpa] = objects["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == daemon(objects)["metadata"]["name"]


def test_everything_on() -> None:
    objects = render("everything-on")
    deployment = daemon(objects)
    c = connector(deployment)
    pod = deployment["spec"]["template"]["spec"]
    assert c["image"].startswith("registry.example.com/flyte-connector@sha256:0123")
    params = serve_params(c["args"], {})
    assert params["plugins"] == ("databricks", "bigquery", "snowflake")
    assert params["modules"] == ("my_team.connectors",)
    assert params["max_inflight_bytes"] == 67108864
    assert params["workers"] == 48 and params["log_level"] == "debug"
    assert params["tls_cert"] == "/etc/flyte-connector/tls/tls.crt"
    assert params["connections"] == "/etc/flyte-connector/connections/connections.yaml"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["connections"] == "/etc/flyte-connector/connections"
    assert mounts["credentials"] == "/etc/flyte-connector/credentials"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["credentials"]["secret"] == {
        "secretName": "flyte-connector-credentials", "defaultMode": 0o440, "optional": True}
    connections = objects_named(objects, "ConfigMap")["flyte-connector-connections"]
    rules = yaml.safe_load(connections["data"]["connections.yaml"])["connections"]
    assert [r["task_type"] for r in rules] == ["databricks", "snowflake"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert "grpc" not in c[probe] and c[probe]["tcpSocket"]["port"] == 8000
    assert pod["topologySpreadConstraints"][0]["whenUnsatisfiable"] == "DoNotSchedule"
    assert c["env"] == [{"name": "FLYTE_CONNECTOR_SLURM_HOST", "value": "slurm.example.com"}]
    [monitor] = objects["ServiceMonitor"]
    metrics = objects_named(objects, "Service")["flyte-connector-metrics"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        metrics["metadata"]["labels"].items())
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    [pod_monitor] = objects["PodMonitor"]
    assert selects(pod_monitor["spec"]["selector"]["matchLabels"], deployment)
    assert selects(pod_monitor["spec"]["selector"]["matchLabels"], daemon(objects, "StatefulSet"))
    [rule] = objects["PrometheusRule"]
    rules = yaml.safe_load((CHART / "files" / "alert-rules.yaml").read_text())
    assert rule["spec"] == rules
    dashboard = objects_named(objects, "ConfigMap")["flyte-connector-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["flyte-connector.json"]) == json.loads(
        (CHART / "files" / "grafana-dashboard.json").read_text())
    for kind in objects.values():
        for obj in kind:
            assert obj["metadata"]["annotations"]["owner"] == "platform@example.com"


def test_optional_objects_stay_off_by_default() -> None:
    objects = render()
    for kind in ("StatefulSet", "HorizontalPodAutoscaler", "ServiceMonitor", "PodMonitor",
                 "PrometheusRule", "ConfigMap", "Secret", "ClusterRole"):
        assert kind not in objects, kind
    assert objects["PodDisruptionBudget"][0]["spec"]["maxUnavailable"] == 1


BACKEND = {"flyte2": "deploy/flyte/flyte2-from-flyteconnector.yaml",
           "flyte1": "deploy/flyte/flyte1-from-flyteconnector.yaml"}


@pytest.mark.parametrize("generation", sorted(BACKEND))
def test_the_backend_blocks_for_a_flyteconnector_switch_point_at_the_charts_services(
        generation: str) -> None:
    config = yaml.safe_load((REPO / BACKEND[generation]).read_text())
    plugin = config["plugins"]["connector-service"]
    assert set(plugin) <= PLUGIN_KEYS
    default = plugin["defaultConnector"]
    assert set(default) <= DEPLOYMENT_KEYS and set(default["timeouts"]) <= TIMEOUT_KEYS
    routed = {t for t, p in config["tasks"]["task-plugins"]["default-for-task-types"].items()
              if p == "connector-service"}
    assert routed == {"databricks", "bigquery_query_job_task", "snowflake"}
    services = objects_named(render("c0-style"), "Service")
    if generation == "flyte2":  # no k8s:// resolver: the headless Service, dns:///
        headless = services["flyteconnector-headless"]
        assert headless["spec"]["clusterIP"] == "None"
        assert default["endpoint"] == (
            "dns:///flyteconnector-headless.flyte.svc.cluster.local:8000")
    else:
        assert default["endpoint"] == "k8s://flyteconnector.flyte:8000"
        assert services["flyteconnector"]["spec"]["ports"][0]["port"] == 8000
    assert "round_robin" in default["defaultServiceConfig"]
    grace = serve_params(connector(daemon(render("c0-style")))["args"], {})["grace_period"]
    for wait in (default["defaultTimeout"], *default["timeouts"].values()):
        assert 0 < int(str(wait).rstrip("s")) <= grace


def test_the_three_cloud_task_types_are_what_their_plugins_serve() -> None:
    pytest.importorskip("flyteplugins.databricks", reason="needs the flyte-test extra")
    from connector_cli.discovery import discover
    from connector_cli.sdk.registry import ConnectorRegistry

    registry = ConnectorRegistry()
    assert not discover(registry, (), ("databricks", "bigquery", "snowflake")).failed
    assert {t for t, _ in registry.categories()} == {
        "databricks", "bigquery_query_job_task", "snowflake"}


@pytest.mark.parametrize(("sets", "mounted"), [((), False), (("rbac.enabled=true",), True),
                                               (("serviceAccount.automountToken=true",), True)])
def test_the_api_token_is_mounted_only_when_asked(sets: tuple[str, ...], mounted: bool) -> None:
    objects = render("", *sets)
    assert daemon(objects)["spec"]["template"]["spec"]["automountServiceAccountToken"] is mounted
    assert objects["ServiceAccount"][0]["automountServiceAccountToken"] is mounted
