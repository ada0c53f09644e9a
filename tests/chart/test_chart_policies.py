"""What the chart allows: its permissions per mode (a golden list, so that a new permission is a
reviewed diff) and its allowedImages ValidatingAdmissionPolicy, enforced by the local API server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy_devenv.assets import require_binary
from modeldeploy_operator.resources import CHILDREN, MODEL_DEPLOYMENT
from tests.conftest import REPO_ROOT, Cluster
from tests.operator.factories import manifest
from tests.support import wait_until

CHART = REPO_ROOT / "charts" / "modeldeploy"
GOLDEN = Path(__file__).parent / "golden"
MODES = {
    "all-namespaces": [],
    "namespaced": ["--set", "watchNamespaces={ml,search}"],
}


def render(*args: str) -> str:
    result = subprocess.run(
        [str(require_binary("helm")), "template", "modeldeploy", str(CHART), "-n", "modeldeploy-system",
         "--skip-crds", *args],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def roles(rendered: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] in ("ClusterRole", "Role")]


def permission_lines(rendered: str) -> list[str]:
    """One line per (role, API group, resource): its verbs, sorted."""
    lines = []
    for role in roles(rendered):
        metadata = role["metadata"]
        where = f"{role['kind']} {metadata['name']}" + (
            f" in {metadata['namespace']}" if "namespace" in metadata else ""
        )
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    lines.append(f"{where}: {group or 'core'}/{resource}: {' '.join(sorted(rule['verbs']))}")
    return sorted(lines)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_the_chart_grants_exactly_the_reviewed_permissions(mode: str) -> None:
    path = GOLDEN / f"permissions-{mode}.txt"
    rendered = "\n".join(permission_lines(render(*MODES[mode]))) + "\n"
    if os.environ.get("MODELDEPLOY_UPDATE_GOLDEN") == "1":
        path.write_text(rendered)
    assert rendered == path.read_text(), (
        f"the chart's permissions differ from {path}; review the change, then MODELDEPLOY_UPDATE_GOLDEN=1"
    )


def test_every_managed_kind_has_the_permissions_the_operator_uses() -> None:
    granted: dict[str, set[str]] = {}
    for role in roles(render()):
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.setdefault(f"{group}/{resource}", set()).update(rule["verbs"])
    for child in CHILDREN:  # a new row in resources.py needs its RBAC in the chart
        assert {"get", "list", "watch", "patch"} <= granted.get(f"{child.group}/{child.plural}", set()), child
    primary = f"{MODEL_DEPLOYMENT.group}/{MODEL_DEPLOYMENT.plural}"
    assert {"list", "watch", "patch"} <= granted[primary]
    assert "patch" in granted[f"{primary}/status"]
    # blockOwnerDeletion on the children needs this where OwnerReferencesPermissionEnforcement runs.
    assert "update" in granted[f"{primary}/finalizers"]


@pytest.fixture
def crd(cluster: Cluster) -> Cluster:
    """The ModelDeployment CRD, as users install it."""
    crds = str(REPO_ROOT / "crds")
    cluster.kubectl("apply", "--server-side", "-f", crds)
    cluster.kubectl("wait", "--for", "condition=Established", "--timeout=60s", "-f", crds)
    return cluster


def test_allowed_images_policy_makes_the_api_server_refuse_other_images(crd: Cluster, namespace: str) -> None:
    release = f"images-{namespace[-6:]}"  # the policy is cluster-scoped: a name of its own
    rendered = subprocess.run(
        [str(require_binary("helm")), "template", release, str(CHART), "-n", namespace,
         "--show-only", "templates/allowed-images.yaml",
         "--set", "allowedImages={registry.example/models/*,registry.example/runtime:1.2}",
         "--set", f"watchNamespaces={{{namespace}}}"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    crd.kubectl("apply", "-f", "-", stdin=rendered)
    try:
        outside = manifest("iris", runtime={"image": "evil.example/registry.example/models/x:1"})

        def refused() -> str | None:
            result = crd.kubectl(
                "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(outside), check=False
            )
            if result.returncode == 0:  # the policy is not active yet: take the object back and retry
                crd.kubectl("delete", "mdep", "iris", "-n", namespace, "--wait=true", check=False)
                return None
            return result.stderr

        message = wait_until("the API server to enforce the allowedImages policy", refused, timeout=60)
        assert (
            "denied request: spec.runtime.image evil.example/registry.example/models/x:1 is not allowed"
            in message
        )
        assert "registry.example/models/*, registry.example/runtime:1.2" in message
        for allowed in ("registry.example/models/runtime:3", "registry.example/runtime:1.2"):
            body = manifest("iris", runtime={"image": allowed})
            crd.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(body))
        near_miss = manifest("iris", runtime={"image": "registry.example/runtime:1.2.3"})
        result = crd.kubectl(
            "apply",
            "--dry-run=server",
            "-n",
            namespace,
            "-f",
            "-",
            stdin=yaml.safe_dump(near_miss),
            check=False,
        )
        assert result.returncode != 0, "a pattern without '*' matches exactly one image"
        crd.kubectl(
            "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest("iris"))
        )
    finally:
        crd.kubectl("delete", "-f", "-", "--wait=false", stdin=rendered, check=False)
