"""The container image and Kubernetes manifests agree with each other and with the CLI.

No Docker engine or cluster runs here: the Dockerfile and manifests are parsed, their
invariants checked against the real `flyte-connector serve` command, and the Deployment's
own arguments are used to start a real daemon that answers the probes' health checks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from importlib.metadata import entry_points
from typing import Any

import click
import pytest
import yaml

from connector_cli._version import __version__
from tests.conftest import REPO

K8S = REPO / "deploy" / "kubernetes"
BACKEND_CONFIG = REPO / "deploy" / "flyte" / "connector-service.yaml"
# Keys of the backend's connector plugin config (flyteplugins .../webapi/connector/config.go:
# Config and Deployment json tags) and the RPC names it looks up in `timeouts` (client.go,
# plugin.go). A misspelt key is silently ignored by the backend, so spell-check them here.
PLUGIN_KEYS = {"webApi", "resourceConstraints", "defaultConnector", "connectors",
               "connectorForTaskTypes", "supportedTaskTypes", "pollInterval"}
DEPLOYMENT_KEYS = {"endpoint", "insecure", "defaultServiceConfig", "timeouts", "defaultTimeout"}
TIMEOUT_KEYS = {"CreateTask", "GetTask", "DeleteTask", "ListConnectors"}
DOCKERFILE = REPO / "Dockerfile"
SECRET_EXAMPLE = "secret.example.yaml"
PLUGIN_DIRS = sorted(p.parent.relative_to(REPO).as_posix()
                     for p in REPO.glob("plugins/*/pyproject.toml"))


# ---------------------------------------------------------------- helpers

def serve_command() -> click.Command:
    from connector_cli.cli import cli

    return cli.commands["serve"]


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


def container() -> dict[str, Any]:
    containers = one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def serve_params(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """What `flyte-connector serve` makes of the container's args and environment."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("FLYTE_CONNECTOR_")}
    os.environ.update(env)
    try:
        ctx = serve_command().make_context("serve", list(args))
        return dict(ctx.params)
    finally:
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(saved)


def container_env(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: str(e["value"]) for e in c.get("env", []) if "value" in e}


def deployed_params() -> dict[str, Any]:
    c = container()
    return serve_params(c.get("args", []), container_env(c))


def prestop_seconds(c: dict[str, Any]) -> int:
    hook = c.get("lifecycle", {}).get("preStop")
    if not hook:
        return 0
    if "sleep" in hook:
        return int(hook["sleep"]["seconds"])
    command = hook["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    return int(command[1])


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, buffer = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        if not buffer and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.rstrip().endswith("\\"):
            buffer += raw.rstrip()[:-1] + " "
            continue
        lines.append(buffer + raw)
        buffer = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in lines]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def build_arg(name: str) -> str:
    for op, rest in dockerfile_instructions():
        if op == "ARG" and rest.split("=", 1)[0] == name:
            return rest.split("=", 1)[1].strip().strip('"')
    raise AssertionError(f"Dockerfile has no ARG {name}")


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
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                 "ServiceAccount", "Secret", "Kustomization"):
        assert kind in kinds, f"no {kind} in deploy/kubernetes"
    assert one("Deployment")["apiVersion"] == "apps/v1"
    assert one("HorizontalPodAutoscaler")["apiVersion"] == "autoscaling/v2"
    assert one("PodDisruptionBudget")["apiVersion"] == "policy/v1"


def test_kustomization_applies_every_manifest_but_the_secret_example() -> None:
    kustomization = one("Kustomization")
    listed = set(kustomization["resources"])
    expected = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", SECRET_EXAMPLE}
    assert listed == expected
    image = container()["image"]
    pinned = {i["name"]: i for i in kustomization["images"]}
    assert image.split(":")[0] in pinned, "kustomization.yaml does not set the image"
    assert str(pinned[image.split(":")[0]]["newTag"]) == __version__


def test_labels_and_selectors_agree() -> None:
    deployment = one("Deployment")
    match = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert match.items() <= pod_labels.items()
    service = one("Service")
    assert service["spec"]["selector"] == match
    pdb = one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == match
    for spread in deployment["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
        assert spread["labelSelector"]["matchLabels"] == match
    target = one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"], "Deployment", deployment["metadata"]["name"])


def test_references_between_objects_resolve() -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == one("ServiceAccount")["metadata"]["name"]
    secret = one("Secret")
    refs = [e["secretRef"] for e in container().get("envFrom", []) if "secretRef" in e]
    assert any(r["name"] == secret["metadata"]["name"] for r in refs)
    assert all(r.get("optional") for r in refs), "the daemon must start without the example"
    assert secret["stringData"] and all(k.startswith("FLYTE_SECRET_") for k in secret["stringData"])
    assert not any(secret["stringData"].values()), "the example must not carry a value"
    volumes = {v["name"] for v in pod["volumes"]}
    assert {m["name"] for m in container()["volumeMounts"]} <= volumes


def test_ports_agree_with_the_cli_the_service_and_the_probes() -> None:
    params = deployed_params()
    grpc_port, metrics_port = params["port"], params["metrics_port"]
    c = container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": grpc_port, "metrics": metrics_port}
    service_ports = {p["name"]: p for p in one("Service")["spec"]["ports"]}
    assert set(service_ports) == {"grpc", "metrics"}
    for name, port in service_ports.items():
        target = port["targetPort"]
        assert (ports[target] if isinstance(target, str) else target) == ports[name], name
    assert service_ports["grpc"]["port"] == grpc_port == 8000
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if probe in c:
            assert c[probe]["grpc"]["port"] == grpc_port, probe
    annotations = one("Deployment")["spec"]["template"]["metadata"].get("annotations", {})
    assert int(annotations["prometheus.io/port"]) == metrics_port


def test_probe_service_names_are_the_daemons_health_service_names() -> None:
    from flyteidl2.connector import service_pb2

    names = {s.full_name for s in service_pb2.DESCRIPTOR.services_by_name.values()}
    assert "flyteidl2.connector.AsyncConnectorService" in names
    c = container()
    assert c["readinessProbe"]["grpc"]["service"] == "flyteidl2.connector.AsyncConnectorService"
    assert c["livenessProbe"]["grpc"].get("service", "") == ""
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if probe in c:
            assert c[probe]["grpc"].get("service", "") in names | {""}, probe


def test_every_daemon_option_in_the_deployment_is_real() -> None:
    params = serve_command().params
    envvars = {p.envvar for p in params if isinstance(p.envvar, str)}
    envvars |= {e for p in params if isinstance(p.envvar, (list, tuple)) for e in p.envvar}
    opts = {o for p in params for o in (*p.opts, *p.secondary_opts)}
    c = container()
    for name in container_env(c):
        if name.startswith("FLYTE_CONNECTOR_"):
            assert name in envvars, f"{name} is not an environment variable of serve"
    for arg in c.get("args", []):
        if arg.startswith("-"):
            assert arg.split("=", 1)[0] in opts, f"{arg} is not an option of serve"
    deployed_params()  # click itself parses and type-checks the args (NoSuchOption etc.)


def test_termination_grace_outlasts_the_drain() -> None:
    params = deployed_params()
    pod = one("Deployment")["spec"]["template"]["spec"]
    c = container()
    drain = params["grace_period"] + prestop_seconds(c)
    assert pod["terminationGracePeriodSeconds"] > drain
    live = c["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] > drain, (
        "liveness must not kill a daemon while it drains")


def test_scaling_and_disruption_budget_leave_room_to_drain() -> None:
    hpa = one("HorizontalPodAutoscaler")["spec"]
    assert "replicas" not in one("Deployment")["spec"], "the HPA owns the replica count"
    assert hpa["minReplicas"] > one("PodDisruptionBudget")["spec"]["minAvailable"] >= 1
    assert hpa["maxReplicas"] >= hpa["minReplicas"]
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    resources = container()["resources"]
    for kind in ("cpu", "memory"):
        assert quantity(resources["requests"][kind]) <= quantity(resources["limits"][kind])


def test_pod_runs_non_root_on_a_read_only_root_with_a_writable_tmp() -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    c = container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == dockerfile_user().split(":")[0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"] for m in c["volumeMounts"] if m["name"] in empty_dirs}
    tmpdir = dockerfile_env()["TMPDIR"]
    assert tmpdir in mounts and dockerfile_env()["HOME"] in mounts


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


def test_backend_config_uses_the_plugins_real_keys() -> None:
    plugin = backend_config()["plugins"]["connector-service"]
    assert set(plugin) <= PLUGIN_KEYS
    for deployment in [plugin["defaultConnector"], *plugin.get("connectors", {}).values()]:
        assert set(deployment) <= DEPLOYMENT_KEYS
        assert set(deployment.get("timeouts", {})) <= TIMEOUT_KEYS
    for target in plugin.get("connectorForTaskTypes", {}).values():
        assert target in plugin.get("connectors", {}), target
    assert routed_task_types()
    json.loads(plugin["defaultConnector"]["defaultServiceConfig"])


def test_backend_config_points_at_the_service_and_waits_less_than_the_drain() -> None:
    connector = backend_config()["plugins"]["connector-service"]["defaultConnector"]
    service = one("Service")
    namespace = one("Kustomization")["namespace"]
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
    name = service["metadata"]["name"]
    assert connector["endpoint"] == f"dns:///{name}.{namespace}.svc.cluster.local:{port}"
    assert service["spec"]["clusterIP"] == "None", "round_robin needs one address per pod"
    assert "round_robin" in connector["defaultServiceConfig"]
    params = deployed_params()
    assert connector["insecure"] is (params["tls_cert"] is None)
    waits = [connector["defaultTimeout"], *connector.get("timeouts", {}).values()]
    assert all(0 < seconds(w) <= params["grace_period"] for w in waits), (
        "a drain must let every call the backend still waits for finish")


# ---------------------------------------------------------------- alerting rules

ALERT_RULES = REPO / "deploy" / "prometheus" / "flyte-connector-rules.yaml"
TARGET_LABELS = {"instance", "job", "le"}


def daemon_series() -> dict[str, set[str]]:
    """Series names the daemon exports, with the label names each carries."""
    from connector_cli.metrics import exported_series

    return exported_series()


def test_alert_rules_query_metrics_and_labels_the_daemon_exports() -> None:
    series = daemon_series()
    from connector_cli.service import OPERATIONS

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
    assert int(backlog["expr"].rsplit(">", 1)[1]) < deployed_params()["workers"]


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
    for needed in ("pyproject.toml", "README.md", "connector_cli/cli/serve.py",
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

@pytest.fixture
def daemon_with_deployment_args(tmp_path: Path) -> Any:
    """`flyte-connector serve` with the Deployment's args, moved to free local ports."""
    c = container()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYTE_CONNECTOR_")}
    env.update(container_env(c))
    argv = [sys.executable, "-m", "connector_cli", "serve", *c.get("args", []),
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
        yield proc, address, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_the_daemon_started_with_the_deployment_args_answers_every_probe(
    daemon_with_deployment_args: Any,
) -> None:
    import grpc
    from flyteidl2.connector import connector_pb2, service_pb2_grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    proc, address, log = daemon_with_deployment_args
    c = container()
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
    assert advertised == routed_task_types(), "the backend config routes other task types"
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=deployed_params()["grace_period"] + 5) == 0, log.read_text()
    assert time.monotonic() - start < deployed_params()["grace_period"]
