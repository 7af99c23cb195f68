"""The object-store deployments: compose's optional SeaweedFS profile, and the k8s variant that
needs no ReadWriteMany volume (rendered by `kubectl kustomize` where kubectl exists)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def test_compose_object_store_profile_is_optional():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert compose["services"]["seaweedfs"]["profiles"] == ["object-store"]
    assert all("profiles" not in compose["services"][s] for s in ("redis", "api", "worker"))
    for service in ("api", "worker"):
        env = compose["services"][service]["environment"]
        assert env["PRUNESERVE_ARTIFACTS_URL"] == "${PRUNESERVE_ARTIFACTS_URL:-}"  # default: dir


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl")
def test_k8s_object_store_variant_has_no_shared_volume():
    def render(path: str) -> list[dict]:
        out = subprocess.run(
            ["kubectl", "kustomize", str(REPO / path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        return list(yaml.safe_load_all(out))

    shared = [d for d in render("deploy/k8s") if "ReadWriteMany" in str(d)]
    assert [d["metadata"]["name"] for d in shared] == ["pruneserve-artifacts"]
    variant = render("deploy/k8s-object-store")
    assert "ReadWriteMany" not in str(variant) and "pruneserve-artifacts" not in str(variant)
    for d in (d for d in variant if d["kind"] == "Deployment"):
        pod = d["spec"]["template"]["spec"]
        assert {"secretRef": {"name": "pruneserve-s3"}} in pod["containers"][0]["envFrom"]
        scratch = next(v for v in pod["volumes"] if v["name"] == "artifacts")
        assert set(scratch) == {"name", "emptyDir"}
