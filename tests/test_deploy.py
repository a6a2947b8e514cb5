"""The container image and the Helm chart's production layout agree with each other and
with the CLI.

No Docker engine or cluster runs here: the Dockerfile is parsed and the chart rendered by
the real `helm` (tests/fixtures/helm/host-local.yaml), their invariants checked against
the real `flyte-connector serve` command, and each workload's own arguments are used to
start a real daemon that answers the probes' health checks. Two workloads: the scaled
Deployment `flyte-connector` for connectors whose job state is all in resource_meta, and
the one-replica StatefulSet `flyte-connector-local` for the bundled local-job connectors
(shell, sql), whose jobs live on the daemon's pod.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector_cli._version import __version__
from tests.conftest import REPO
from tests.helpers.deploy_manifests import (
    DEPLOYMENT_KEYS,
    LOCAL,
    PLUGIN_KEYS,
    SCALED,
    TIMEOUT_KEYS,
    WORKLOAD_KINDS,
    container,
    container_env,
    deployed_params,
    manifests,
    named,
    one,
    pod_spec,
    serve_command,
    serve_params,
    workload,
)
from tests.helpers.dockerfile import build_arg, dockerfile_instructions, final_stage

BACKEND_CONFIG = REPO / "deploy" / "flyte" / "connector-service.yaml"
PLUGIN_DIRS = sorted(p.parent.relative_to(REPO).as_posix()
                     for p in REPO.glob("plugins/*/pyproject.toml"))


# ---------------------------------------------------------------- helpers

def service_of(name: str) -> dict[str, Any]:
    """The one headless gRPC Service whose selector picks this workload's pods (and no
    other's): what the backend's dns:/// endpoint names. (The metrics Service selects the
    pods of both workloads, the ClusterIP Service the Deployment's.)"""
    labels = {n: workload(n)["spec"]["template"]["metadata"]["labels"] for n in WORKLOAD_KINDS}
    picks = [s for s in manifests()["Service"]
             if s["spec"]["selector"].items() <= labels[name].items()
             and s["spec"].get("clusterIP") == "None"
             and "grpc" in {p["name"] for p in s["spec"]["ports"]}]
    assert len(picks) == 1, f"{len(picks)} Services select the pods of {name}"
    for other, other_labels in labels.items():
        if other != name:
            assert not picks[0]["spec"]["selector"].items() <= other_labels.items(), (
                f"Service {picks[0]['metadata']['name']} also selects the pods of {other}")
    return picks[0]


def loaded_task_types(name: str) -> set[str]:
    """Task types the workload's plugin selection loads from what is installed here."""
    from connector_cli.cli.options import discovery_config
    from connector_cli.discovery import discover
    from connector_cli.sdk.registry import ConnectorRegistry

    params = deployed_params(name)
    config = discovery_config(params["modules"], params["plugins"])
    registry = ConnectorRegistry()
    report = discover(registry, config.modules, config.plugins)
    assert not report.failed, [f.error for f in report.failed]
    return {task_type for task_type, _version in registry.categories()}


def prestop_seconds(c: dict[str, Any]) -> int:
    hook = c.get("lifecycle", {}).get("preStop")
    if not hook:
        return 0
    if "sleep" in hook:
        return int(hook["sleep"]["seconds"])
    command = hook["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    return int(command[1])


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: `**` spans directories, `*` and `?` do not."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i:end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; matching a parent directory counts."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!"))
        if any(regex.fullmatch(c) for c in candidates):
            ignored = not negate
    return ignored


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [ln.strip().rstrip("/") for ln in lines if ln.strip() and not ln.startswith("#")]


def quantity(value: Any) -> float:
    """A Kubernetes quantity (250m, 1, 256Mi, 1Gi) as a number."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


# ---------------------------------------------------------------- manifests

def test_every_manifest_parses_and_the_needed_kinds_exist() -> None:
    kinds = manifests()
    for kind in ("Deployment", "StatefulSet", "Service", "HorizontalPodAutoscaler",
                 "PodDisruptionBudget", "ServiceAccount", "Secret"):
        assert kind in kinds, f"no {kind} rendered"
    assert {w["metadata"]["name"] for k in ("Deployment", "StatefulSet") for w in kinds[k]} == (
        set(WORKLOAD_KINDS))
    for name in WORKLOAD_KINDS:
        assert workload(name)["apiVersion"] == "apps/v1"
    assert one("HorizontalPodAutoscaler")["apiVersion"] == "autoscaling/v2"
    assert one("PodDisruptionBudget")["apiVersion"] == "policy/v1"


def test_the_image_is_the_release_of_this_package_by_default() -> None:
    chart = yaml.safe_load((REPO / "deploy" / "helm" / "flyte-connector" / "Chart.yaml").read_text())
    assert chart["appVersion"] == chart["version"] == __version__
    for name in WORKLOAD_KINDS:
        assert container(name)["image"] == f"flyte-connector:{__version__}"


@pytest.mark.parametrize("name", list(WORKLOAD_KINDS))
def test_labels_and_selectors_agree(name: str) -> None:
    w = workload(name)
    match = w["spec"]["selector"]["matchLabels"]
    pod_labels = w["spec"]["template"]["metadata"]["labels"]
    assert match.items() <= pod_labels.items()
    service = service_of(name)
    assert service["spec"]["selector"] == match
    for spread in w["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
        assert spread["labelSelector"]["matchLabels"] == match
    budgets = [b for b in manifests()["PodDisruptionBudget"]
               if b["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()]
    targets = [h["spec"]["scaleTargetRef"] for h in manifests()["HorizontalPodAutoscaler"]]
    scaled_by = [t for t in targets if (t["kind"], t["name"]) == (w["kind"], name)]
    if name == SCALED:
        assert [b["spec"]["selector"]["matchLabels"] for b in budgets] == [match]
        assert [t["apiVersion"] for t in scaled_by] == [w["apiVersion"]]
    else:
        assert w["spec"]["serviceName"] == service["metadata"]["name"]
        assert not budgets, "a one-replica budget either blocks node drains or does nothing"
        assert not scaled_by, "local-job connectors cannot be spread over replicas"


@pytest.mark.parametrize("name", list(WORKLOAD_KINDS))
def test_references_between_objects_resolve(name: str) -> None:
    pod = pod_spec(name)
    c = container(name)
    assert pod["serviceAccountName"] == one("ServiceAccount")["metadata"]["name"]
    secrets = {s["metadata"]["name"] for s in manifests()["Secret"]}
    for volume in pod["volumes"]:
        if "secret" in volume and not volume["secret"].get("optional"):
            assert volume["secret"]["secretName"] in secrets, volume
    assert not c.get("envFrom"), "credentials are files the connections file names"
    mounted = {v["name"]: v for v in pod["volumes"]}
    assert mounted["credentials"]["secret"]["optional"], "the daemon must start without it"
    maps = {m["metadata"]["name"] for m in manifests()["ConfigMap"]}
    assert mounted["connections"]["configMap"]["name"] in maps
    volumes = {v["name"] for v in pod["volumes"]}
    claims = {t["metadata"]["name"] for t in workload(name)["spec"].get("volumeClaimTemplates", [])}
    assert not volumes & claims
    assert {m["name"] for m in c["volumeMounts"]} <= volumes | claims


@pytest.mark.parametrize("name", list(WORKLOAD_KINDS))
def test_ports_agree_with_the_cli_the_service_and_the_probes(name: str) -> None:
    params = deployed_params(name)
    grpc_port, metrics_port = params["port"], params["metrics_port"]
    c = container(name)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": grpc_port, "metrics": metrics_port}
    service_ports = {p["name"]: p for p in service_of(name)["spec"]["ports"]}
    assert set(service_ports) == {"grpc"}
    metrics = named("Service", f"{SCALED}-metrics")
    assert metrics["spec"]["selector"].items() <= (
        workload(name)["spec"]["template"]["metadata"]["labels"].items())
    service_ports.update({p["name"]: p for p in metrics["spec"]["ports"]})
    for port_name, port in service_ports.items():
        target = port["targetPort"]
        assert (ports[target] if isinstance(target, str) else target) == ports[port_name]
    assert service_ports["grpc"]["port"] == grpc_port == 8000
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if probe in c:
            assert c[probe]["grpc"]["port"] == grpc_port, probe
    annotations = workload(name)["spec"]["template"]["metadata"].get("annotations", {})
    assert int(annotations["prometheus.io/port"]) == metrics_port


@pytest.mark.parametrize("name", list(WORKLOAD_KINDS))
def test_probe_service_names_are_the_daemons_health_service_names(name: str) -> None:
    from flyteidl2.connector import service_pb2

    names = {s.full_name for s in service_pb2.DESCRIPTOR.services_by_name.values()}
    assert "flyteidl2.connector.AsyncConnectorService" in names
    c = container(name)
    assert c["readinessProbe"]["grpc"]["service"] == "flyteidl2.connector.AsyncConnectorService"
    assert c["livenessProbe"]["grpc"].get("service", "") == ""
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if probe in c:
            assert c[probe]["grpc"].get("service", "") in names | {""}, probe


@pytest.mark.parametrize("name", list(WORKLOAD_KINDS))
def test_every_daemon_option_in_the_workload_is_real(name: str) -> None:
    params = serve_command().params
    envvars = {p.envvar for p in params if isinstance(p.envvar, str)}
    envvars |= {e for p in params if isinstance(p.envvar, (list, tuple)) for e in p.envvar}
    opts = {o for p in params for o in (*p.opts, *p.secondary_opts)}
    c = container(name)
    for env_name in container_env(c):
        if env_name.startswith("FLYTE_CONNECTOR_") and env_name not in PLUGIN_STATE_ENVS:
            assert env_name in envvars, f"{env_name} is not an environment variable of serve"
    for arg in c.get("args", []):
        if arg.startswith("-"):
            assert arg.split("=", 1)[0] in opts, f"{arg} is not an option of serve"
    assert deployed_params(name)["strict"], "--strict: a missing plugin must fail the rollout"


@pytest.mark.parametrize("name", list(WORKLOAD_KINDS))
def test_termination_grace_outlasts_the_drain(name: str) -> None:
    params = deployed_params(name)
    pod = pod_spec(name)
    c = container(name)
    drain = params["grace_period"] + prestop_seconds(c)
    assert pod["terminationGracePeriodSeconds"] > drain
    live = c["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] > drain, (
        "liveness must not kill a daemon while it drains")


def test_scaling_and_disruption_budget_leave_room_to_drain() -> None:
    hpa = one("HorizontalPodAutoscaler")["spec"]
    assert "replicas" not in workload(SCALED)["spec"], "the HPA owns the replica count"
    budget = one("PodDisruptionBudget")["spec"]
    assert "minAvailable" not in budget and budget["maxUnavailable"] == 1
    assert hpa["minReplicas"] > budget["maxUnavailable"], "a drain keeps a replica serving"
    assert hpa["maxReplicas"] >= hpa["minReplicas"]
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    assert workload(LOCAL)["spec"]["replicas"] == 1
    for name in WORKLOAD_KINDS:
        resources = container(name)["resources"]
        for kind in ("cpu", "memory"):
            assert quantity(resources["requests"][kind]) <= quantity(resources["limits"][kind])


@pytest.mark.parametrize("name", list(WORKLOAD_KINDS))
def test_pod_runs_non_root_on_a_read_only_root_with_a_writable_tmp(name: str) -> None:
    pod = pod_spec(name)
    c = container(name)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == dockerfile_user().split(":")[0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"] for m in c["volumeMounts"] if m["name"] in empty_dirs}
    tmpdir = dockerfile_env()["TMPDIR"]
    assert tmpdir in mounts and dockerfile_env()["HOME"] in mounts


# ---------------------------------------------------------------- local-job connectors

def _bundled_plugins() -> dict[str, dict[str, str]]:
    """Each bundled plugin's distribution name -> its flyte.connectors entry points."""
    import tomllib

    found = {}
    for directory in PLUGIN_DIRS:
        project = tomllib.loads((REPO / directory / "pyproject.toml").read_text())["project"]
        found[project["name"]] = project["entry-points"]["flyte.connectors"]
    return found


def _state_dir_envs() -> set[str]:
    """The state-directory variables the bundled plugins read (their own constants)."""
    from flyte_connector_shell.connector import STATE_DIR_ENV as SHELL_STATE_DIR_ENV
    from flyte_connector_sql.jobfiles import STATE_DIR_ENV as SQL_STATE_DIR_ENV

    return {SHELL_STATE_DIR_ENV, SQL_STATE_DIR_ENV}


# Bundled plugins whose jobs live in an external service (stateless: any replica serves them).
STATELESS_PLUGINS = {"flyte-connector-slurm"}
# Every other bundled plugin runs its jobs as processes on the daemon's host (local-job).
LOCAL_JOB_PLUGINS = {d: set(eps) for d, eps in _bundled_plugins().items()
                     if d not in STATELESS_PLUGINS}
PLUGIN_STATE_ENVS = _state_dir_envs()


def loaded_task_types_of_dist(dist: str) -> set[str]:
    """Task types one installed plugin distribution serves."""
    from connector_cli.discovery import discover
    from connector_cli.sdk.registry import ConnectorRegistry

    registry = ConnectorRegistry()
    assert not discover(registry, plugins=(dist,)).failed
    return {task_type for task_type, _version in registry.categories()}


def test_the_scaled_deployment_loads_no_local_job_plugin() -> None:
    selection = {p.lower() for p in deployed_params(SCALED)["plugins"]}
    assert selection and "all" not in selection, (
        "without a selection the scaled daemon loads every installed plugin, shell and sql too")
    names = {n.lower() for dist, eps in LOCAL_JOB_PLUGINS.items() for n in (dist, *eps)}
    assert not selection & names, f"local-job plugins in the scaled Deployment: {selection & names}"
    local_types = {t for dist in LOCAL_JOB_PLUGINS for t in loaded_task_types_of_dist(dist)}
    assert not loaded_task_types(SCALED) & local_types


def test_the_local_statefulset_serves_exactly_the_local_job_plugins() -> None:
    selection = set(deployed_params(LOCAL)["plugins"])
    assert selection == {ep for eps in LOCAL_JOB_PLUGINS.values() for ep in eps}
    expected = {t for dist in LOCAL_JOB_PLUGINS for t in loaded_task_types_of_dist(dist)}
    assert loaded_task_types(LOCAL) == expected


def test_local_job_directories_are_on_the_persistent_volume() -> None:
    c = container(LOCAL)
    env = container_env(c)
    assert PLUGIN_STATE_ENVS <= set(env), "every bundled plugin's state directory is set"
    claims = workload(LOCAL)["spec"]["volumeClaimTemplates"]
    assert [t["spec"]["accessModes"] for t in claims] == [["ReadWriteOnce"]]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    claim_mounts = [path for path, vol in mounts.items() if vol == claims[0]["metadata"]["name"]]
    assert len(claim_mounts) == 1
    for variable in PLUGIN_STATE_ENVS:
        state = Path(env[variable])
        assert state.is_absolute(), variable
        # The deepest mount holding the state directory must be the claim, not /tmp.
        holder = max((Path(m) for m in mounts if state.is_relative_to(m)), key=lambda m: len(m.parts))
        assert holder == Path(claim_mounts[0]), f"{variable}={state} is not on the volume"
    assert len({env[v] for v in PLUGIN_STATE_ENVS}) == len(PLUGIN_STATE_ENVS)
    assert not PLUGIN_STATE_ENVS & set(container_env(container(SCALED)))


# ---------------------------------------------------------------- Flyte backend config

def backend_config() -> dict[str, Any]:
    return yaml.safe_load(BACKEND_CONFIG.read_text())


def seconds(duration: str) -> float:
    """A Go duration as the backend config writes it (500ms, 10s, 1m, 1h)."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(duration))
    assert found, f"not a duration: {duration!r}"
    return float(found.group(1)) * {"ms": 1e-3, "s": 1, "m": 60, "h": 3600}[found.group(2)]


def routed_task_types() -> set[str]:
    plugins = backend_config()["tasks"]["task-plugins"]
    assert "connector-service" in plugins["enabled-plugins"]
    return {t for t, p in plugins["default-for-task-types"].items() if p == "connector-service"}


def connector_config() -> dict[str, Any]:
    return backend_config()["plugins"]["connector-service"]  # type: ignore[no-any-return]


def backend_deployment(name: str) -> dict[str, Any]:
    """The backend's connection settings for a workload: the scaled one is the default."""
    plugin = connector_config()
    if name == SCALED:
        return plugin["defaultConnector"]  # type: ignore[no-any-return]
    pinned = set(plugin.get("connectorForTaskTypes", {}).values())
    assert len(pinned) == 1, f"expected one pinned connector, found {pinned}"
    return plugin["connectors"][pinned.pop()]  # type: ignore[no-any-return]


def pinned_task_types() -> set[str]:
    return set(connector_config().get("connectorForTaskTypes", {}))


def test_backend_config_uses_the_plugins_real_keys() -> None:
    plugin = connector_config()
    assert set(plugin) <= PLUGIN_KEYS
    for deployment in [plugin["defaultConnector"], *plugin.get("connectors", {}).values()]:
        assert set(deployment) <= DEPLOYMENT_KEYS
        assert set(deployment.get("timeouts", {})) <= TIMEOUT_KEYS
    for target in plugin.get("connectorForTaskTypes", {}).values():
        assert target in plugin.get("connectors", {}), target
    assert routed_task_types()
    json.loads(plugin["defaultConnector"]["defaultServiceConfig"])


def test_backend_config_routes_every_bundled_task_type_to_the_local_connector() -> None:
    local_types = loaded_task_types(LOCAL)
    assert local_types == {t for dist in LOCAL_JOB_PLUGINS for t in loaded_task_types_of_dist(dist)}
    # A ListConnectors reply overrides connectorForTaskTypes in the backend's registry, so
    # pinning holds only while no other daemon lists these task types.
    assert pinned_task_types() == local_types
    assert local_types <= routed_task_types()
    assert routed_task_types() == local_types | loaded_task_types(SCALED)


@pytest.mark.parametrize("name", list(WORKLOAD_KINDS))
def test_backend_config_points_at_the_service_and_waits_less_than_the_drain(name: str) -> None:
    connector = backend_deployment(name)
    service = service_of(name)
    namespace = service["metadata"]["namespace"]
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
    service_name = service["metadata"]["name"]
    assert connector["endpoint"] == f"dns:///{service_name}.{namespace}.svc.cluster.local:{port}"
    assert service["spec"]["clusterIP"] == "None", "dns:/// needs one address per pod"
    if name == SCALED:
        assert "round_robin" in connector["defaultServiceConfig"]
    params = deployed_params(name)
    assert connector["insecure"] is (params["tls_cert"] is None)
    waits = [connector["defaultTimeout"], *connector.get("timeouts", {}).values()]
    assert all(0 < seconds(w) <= params["grace_period"] for w in waits), (
        "a drain must let every call the backend still waits for finish")


# ---------------------------------------------------------------- alerting rules

ALERT_RULES = REPO / "deploy" / "helm" / "flyte-connector" / "files" / "alert-rules.yaml"
TARGET_LABELS = {"instance", "job", "le"}


def daemon_series() -> dict[str, set[str]]:
    """Series names the daemon exports, with the label names each carries."""
    from connector_cli.daemon.metrics import exported_series

    return exported_series()


def test_alert_rules_query_metrics_and_labels_the_daemon_exports() -> None:
    series = daemon_series()
    from connector_cli.daemon.servicers import OPERATIONS

    operations = set(OPERATIONS)
    rules = yaml.safe_load(ALERT_RULES.read_text())["groups"][0]["rules"]
    assert {"FlyteConnectorGetTaskFailing", "FlyteConnectorSlow",
            "FlyteConnectorPluginFailed"} <= {r["alert"] for r in rules}
    for rule in rules:
        expr = rule["expr"]
        names = set(re.findall(r"\bflyte_connector_\w+", expr))
        assert names and names <= set(series), (rule["alert"], names - set(series))
        labels = set().union(*(series[n] for n in names)) | TARGET_LABELS
        used = set(re.findall(r"(\w+)\s*=~?\s*\"", expr))
        for group in re.findall(r"by\s*\(([^)]*)\)", expr):
            used |= {g.strip() for g in group.split(",")}
        assert used <= labels, (rule["alert"], used - labels)
        assert set(re.findall(r'operation="(\w+)"', expr)) <= operations, rule["alert"]
    backlog = next(r for r in rules if r["alert"] == "FlyteConnectorBacklog")
    workers = min(deployed_params(name)["workers"] for name in WORKLOAD_KINDS)
    assert int(backlog["expr"].rsplit(">", 1)[1]) < workers


# ---------------------------------------------------------------- Dockerfile

def dockerfile_user() -> str:
    users = [rest for op, rest in final_stage() if op == "USER"]
    assert users, "the final stage sets no USER"
    return users[-1]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for op, rest in final_stage():
        if op == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


def test_dockerfile_runs_serve_as_non_root_and_exposes_the_cli_ports() -> None:
    user = dockerfile_user()
    assert re.fullmatch(r"\d+(:\d+)?", user), "use a numeric USER so runAsNonRoot can check it"
    assert int(user.split(":")[0]) != 0
    defaults = serve_params([], {})
    exposed = {int(p) for op, rest in final_stage() if op == "EXPOSE" for p in rest.split()}
    assert exposed == {defaults["port"], defaults["metrics_port"]}
    entrypoint = [json.loads(rest) for op, rest in final_stage() if op == "ENTRYPOINT"]
    assert entrypoint[-1] == ["flyte-connector", "serve"]
    assert entry_points(group="console_scripts", name="flyte-connector"), "no console script"
    assert "-slim" in next(rest for op, rest in final_stage() if op == "FROM")


def test_dockerfile_installs_the_bundled_plugins_and_copies_what_exists() -> None:
    assert PLUGIN_DIRS, "no plugins/*/pyproject.toml"
    assert sorted(build_arg("PLUGINS").split()) == PLUGIN_DIRS
    patterns = dockerignore_patterns()
    for op, rest in dockerfile_instructions():
        if op == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (REPO / source).exists(), f"COPY {source}: no such path"
                assert not dockerignored(source, patterns), f"COPY {source} is dockerignored"
    for needed in ("pyproject.toml", "README.md", "connector_cli/cli/serve_command.py",
                   *(f"{d}/pyproject.toml" for d in PLUGIN_DIRS)):
        assert not dockerignored(needed, patterns), needed
    for dropped in (".venv/bin/python", "tests/test_deploy.py", ".git/HEAD",
                    "connector_cli/__pycache__/sdk.cpython-312.pyc"):
        assert dockerignored(dropped, patterns), dropped


def build_context(dest: Path) -> Path:
    """A copy of what `docker build .` sends: the COPY sources minus .dockerignore."""
    patterns = dockerignore_patterns()
    for path in sorted(REPO.rglob("*")):
        rel = path.relative_to(REPO).as_posix()
        if path.is_file() and not dockerignored(rel, patterns):
            if rel.split("/")[0] in {"pyproject.toml", "README.md", "connector_cli", "plugins"}:
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest / rel)
    return dest


def test_the_build_context_builds_the_package_and_plugins(tmp_path: Path) -> None:
    """The image's `pip install . ./plugins/...` has every file it needs in the context."""
    context = build_context(tmp_path / "context")
    wheels = tmp_path / "wheels"
    targets = [".", *(f"./{d}" for d in build_arg("PLUGINS").split())]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "-w", str(wheels), *targets],
                   cwd=context, check=True, timeout=120, capture_output=True)
    declared = {}
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            name = next(n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt"))
            declared[wheel.name.split("-")[0]] = zf.read(name).decode()
    assert "flyte-connector = connector_cli.cli:main" in declared.pop("flyte_connector")
    assert len(declared) == len(PLUGIN_DIRS)
    assert all("[flyte.connectors]" in text for text in declared.values())


# ---------------------------------------------------------------- the real daemon

@pytest.fixture(params=list(WORKLOAD_KINDS))
def daemon_with_workload_args(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """`flyte-connector serve` with a workload's args and env, on free local ports and
    with its state directories moved under tmp_path."""
    name = request.param
    c = container(name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYTE_CONNECTOR_")}
    env.update(container_env(c))
    states = {var: tmp_path / "state" / Path(env[var]).name for var in PLUGIN_STATE_ENVS if var in env}
    env.update({var: str(path) for var, path in states.items()})
    key = tmp_path / "meta.key"  # stands in for the mounted Secret
    key.write_text(os.urandom(32).hex())
    connections = tmp_path / "connections.yaml"  # the ConfigMap's file, as mounted
    connections.write_text(named("ConfigMap", f"{SCALED}-connections")["data"]["connections.yaml"])
    moved = {"--meta-key-file=": key, "--connections=": connections}
    args = [next((f"{o}{p}" for o, p in moved.items() if a.startswith(o)), a)
            for a in c.get("args", [])]
    argv = [sys.executable, "-m", "connector_cli", "serve", *args,
            "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0"]
    log = tmp_path / "serve.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, env=env,
                                cwd=tmp_path)
    deadline = time.monotonic() + 30
    found = None
    while not found and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        found = re.search(r"listening on (127\.0\.0\.1:\d+)", log.read_text())
    address = found.group(1) if found else None
    try:
        assert address, f"serve did not start: {log.read_text()[-2000:]}"
        yield name, proc, address, log, states
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_the_daemon_started_with_each_workloads_args_answers_every_probe(
    daemon_with_workload_args: Any,
) -> None:
    import grpc
    from flyteidl2.connector import connector_pb2, service_pb2_grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    name, proc, address, log, _states = daemon_with_workload_args
    c = container(name)
    services = {c[p]["grpc"].get("service", "") for p in
                ("startupProbe", "readinessProbe", "livenessProbe") if p in c}
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in services:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        listed = service_pb2_grpc.ConnectorMetadataServiceStub(channel).ListConnectors(
            connector_pb2.ListConnectorsRequest(), timeout=5)
    advertised = {c.name for a in listed.connectors for c in a.supported_task_categories}
    assert advertised == loaded_task_types(name)
    assert advertised <= routed_task_types(), "the backend config does not route these"
    if name == LOCAL:
        assert advertised == pinned_task_types()
    else:
        assert not advertised & pinned_task_types(), "it would take over the pinned types"
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    grace = deployed_params(name)["grace_period"]
    assert proc.wait(timeout=grace + 5) == 0, log.read_text()
    assert time.monotonic() - start < grace


@pytest.mark.parametrize("daemon_with_workload_args", [LOCAL], indirect=True)
async def test_local_jobs_with_a_remote_output_prefix_land_in_the_state_directories(
    daemon_with_workload_args: Any,
) -> None:
    """What the volume is for: each plugin keeps its job directory where the env says."""
    from flyteidl2.core.execution_pb2 import TaskExecution
    from flyteidl2.core.tasks_pb2 import TaskTemplate
    from google.protobuf.struct_pb2 import Struct

    from connector_cli.client import ConnectorClient
    from connector_cli.sdk.connector import is_terminal_phase

    _name, _proc, address, _log, states = daemon_with_workload_args
    assert sorted(states) == sorted(PLUGIN_STATE_ENVS)
    jobs = {"shell": {"command": ["true"]}, "sql": {"query": "select 1 as one"}}
    async with ConnectorClient(address) as client:
        for task_type, custom in jobs.items():
            struct = Struct()
            struct.update(custom)
            template = TaskTemplate(type=task_type, custom=struct)
            meta = await client.create(template, "s3://bucket/run/0")
            deadline = time.monotonic() + 15
            resource = await client.get((task_type, 0), meta)
            while not is_terminal_phase(resource.phase) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                resource = await client.get((task_type, 0), meta)
            assert resource.phase == TaskExecution.SUCCEEDED, (task_type, resource.message)
    for variable, state in states.items():
        assert state.is_dir() and len(list(state.iterdir())) == 1, f"{variable}: {state}"
