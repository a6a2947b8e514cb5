"""Both workloads sign resource meta with a key from a shared, required Secret (issue 15).

A scaled Deployment whose replicas generated keys of their own would refuse each other's
job handles, so the manifests must give every replica the same key file, from a Secret
that is mounted read-only and not optional (a missing Secret keeps the pod from starting
rather than letting it fall back to a per-pod key).
"""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from tests.helpers.deploy_manifests import WORKLOAD_KINDS, container, deployed_params, pod_spec


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


@pytest.mark.parametrize("name", list(WORKLOAD_KINDS))
def test_the_meta_key_comes_from_a_required_read_only_secret(name: str) -> None:
    _key_file, secret = meta_key_secret(name)
    assert not secret.get("optional"), "a missing key Secret must stop the pod"
    assert int(secret.get("defaultMode", 0o644)) & 0o007 == 0, "not world-readable"
    assert deployed_params(name)["previous_meta_key_file"] is None


def test_both_workloads_use_the_same_secret() -> None:
    names = {meta_key_secret(n)[1]["secretName"] for n in WORKLOAD_KINDS}
    assert len(names) == 1
